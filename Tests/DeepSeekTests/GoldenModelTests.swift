import Foundation
import Testing
@testable import DeepSeek
@testable import Checkpoint
@testable import Autograd

/// The model against DeepSeek-V2's reference semantics (tools/golden_deepseek.py): logits,
/// hidden states, routing, loss, the expert balance loss and every parameter's gradient.
@Suite(.serialized) struct GoldenModelTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/deepseek").path
    static let cases = ["qlora_group_limited", "plain_q_greedy_norm"]

    func maxAbs(_ a: Tensor, _ b: Tensor) -> Double {
        zip(a.values, b.values).map { abs(Double($0) - Double($1)) }.max() ?? 0
    }

    @Test(arguments: cases)
    func matchesReference(_ name: String) throws {
        let dir = "\(Self.root)/\(name)"
        let model = try HFDirectory.load(dir, positions: 64)
        let expected = try SafeTensorsFile(path: "\(dir)/expected.safetensors")
        let (ids, shape) = try SafeTensorsFile(path: "\(dir)/input.safetensors").integers("input_ids")
        let b = shape[0], t = shape[1]
        let out = model.forward(ids, batch: b, length: t, keepHidden: true)

        let logitsErr = maxAbs(out.logits, try expected.tensor("logits"))
        #expect(logitsErr <= 1e-4, "\(name): logits max|Δ| \(logitsErr)")
        for (i, h) in out.hidden.enumerated() {
            let err = maxAbs(h, try expected.tensor("hidden.\(i)"))
            #expect(err <= 1e-4, "\(name): hidden.\(i) max|Δ| \(err)")
        }
        #expect(out.moe.count == 2)
        for (layer, report) in out.moe {
            let (refIdx, _) = try expected.integers("route.\(layer).topk_idx")
            #expect(report.routing.experts == refIdx, "\(name): layer \(layer) routing differs")
            let lErr = maxAbs(report.routing.logits, try expected.tensor("route.\(layer).router_logits"))
            let wErr = maxAbs(report.routing.weights, try expected.tensor("route.\(layer).topk_weight"))
            #expect(lErr <= 1e-4 && wErr <= 1e-4, "\(name): layer \(layer) router logits \(lErr), weights \(wErr)")
        }

        let targets = DeepSeekV2ForCausalLM.shiftedTargets(ids, batch: b, length: t)
        let loss = out.logits.reshape([b * t, model.config.vocabSize]).crossEntropy(targets: targets)
        let refLoss = try expected.tensor("loss").item
        #expect(abs(loss.item - refLoss) <= 1e-5, "\(name): loss \(loss.item) vs \(refLoss)")
        loss.backward()
        var worst = 0.0, worstName = ""
        for (pname, p) in model.namedParameters() {
            let ref = try expected.tensor("grad.\(pname)").values
            let g = p.grad?.values ?? [Float](repeating: 0, count: p.count)
            var diff2 = 0.0, norm2 = 0.0
            for i in ref.indices {
                let d = Double(g[i]) - Double(ref[i])
                diff2 += d * d
                norm2 += Double(ref[i]) * Double(ref[i])
            }
            let diff = diff2.squareRoot(), norm = norm2.squareRoot()
            let rel = norm == 0 ? diff : diff / norm
            if rel > worst { worst = rel; worstName = pname }
        }
        #expect(worst <= 1e-4, "\(name): worst gradient ‖Δ‖/‖ref‖ = \(worst) at \(worstName)")
    }

    @Test(arguments: cases)
    func expertBalanceLossMatchesReference(_ name: String) throws {
        let dir = "\(Self.root)/\(name)"
        let model = try HFDirectory.load(dir, positions: 64)
        let (ids, shape) = try SafeTensorsFile(path: "\(dir)/input.safetensors").integers("input_ids")
        let training = MoETraining(alphas: .init(expert: model.config.auxLossAlpha, device: 0, communication: 0),
                                   dropping: nil, seed: 1, step: 0)
        let out = withNoGrad { model.forward(ids, batch: shape[0], length: shape[1], training: training) }
        let ref = try SafeTensorsFile(path: "\(dir)/expected.safetensors").tensor("aux_expert").item
        #expect(abs(out.balanceLoss.item - ref) <= 1e-6 * Swift.max(1, abs(ref)), "\(out.balanceLoss.item) vs \(ref)")
    }

    @Test func huggingFaceRoundTripIsBitExact() throws {
        let dir = "\(Self.root)/qlora_group_limited"
        let model = try HFDirectory.load(dir, positions: 64)
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("dt-roundtrip-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        try HFDirectory.save(model, to: out)
        let original = try SafeTensorsFile(path: "\(dir)/model.safetensors")
        let saved = try SafeTensorsFile(path: "\(out)/model.safetensors")
        #expect(original.names == saved.names)
        for n in original.names {
            #expect(try original.tensor(n).values.map(\.bitPattern) == saved.tensor(n).values.map(\.bitPattern), "\(n)")
        }
        #expect(try DeepSeekV2Config.load("\(out)/config.json") == model.config)
        // Sharded save with an index reads back the same.
        let sharded = out + "-sharded"
        defer { try? FileManager.default.removeItem(atPath: sharded) }
        try HFDirectory.save(model, to: sharded, shardBytes: 64 << 10)
        #expect(FileManager.default.fileExists(atPath: "\(sharded)/model.safetensors.index.json"))
        let again = try HFDirectory.load(sharded, positions: 64)
        for ((n, a), (_, b)) in zip(model.namedParameters(), again.namedParameters()) {
            #expect(a.values.map(\.bitPattern) == b.values.map(\.bitPattern), "\(n)")
        }
    }
}
