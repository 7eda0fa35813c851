import Foundation
import Testing
@testable import DeepSeek
@testable import FileFormats
@testable import Checkpoint
@testable import Autograd

/// DeepSeek-V3 against transformers' `DeepseekV3ForCausalLM` (tools/golden_deepseek_v3.py):
/// models saved by `save_pretrained` with a non-zero `e_score_correction_bias`, compared on
/// logits, hidden states, routing, loss and every parameter's gradient; and DeepSeek's release
/// layout with its MTP module as layer num_hidden_layers.
@Suite(.serialized) struct GoldenV3Tests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/deepseek_v3").path
    static let cases = ["interleave_yarn_norm", "plain_q_half_rope"]

    func maxAbs(_ a: Tensor, _ b: Tensor) -> Double { GoldenCheck.maxAbs(a, b) }

    func temporary(_ tag: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("dt-v3-\(tag)-\(getpid())").path
    }

    @Test(arguments: cases)
    func matchesTransformers(_ name: String) throws {
        let dir = "\(Self.root)/\(name)"
        let model = try HFDirectory.load(dir, positions: 64)
        #expect(model.config.isV3 && model.config.topkMethod == .noauxTC && model.mtp == nil)
        #expect(model.routerBiases.count == 2 && model.routerBiases.allSatisfy { $0.bias.values.contains { $0 != 0 } })
        let out = try GoldenCheck.matches(model, dir: dir, name: name)
        // The bias changed some tokens' experts: the routing matched is the biased one.
        let expected = try SafeTensorsFile(path: "\(dir)/expected.safetensors")
        var biasMattered = false
        for (layer, _) in out.moe {
            let biased = try expected.integers("route.\(layer).topk_idx").0, unbiased = try expected.integers("route.\(layer).unbiased_topk_idx").0
            if biased != unbiased { biasMattered = true }
        }
        #expect(out.moe.count == 2 && biasMattered, "\(name): the fixture's bias changes no routing")
    }

    /// transformers writes `num_nextn_predict_layers` (1 by default) but saves no MTP tensors:
    /// such a directory loads with MTP off.
    @Test func promisedButAbsentMTPLoadsWithMTPOff() throws {
        let src = "\(Self.root)/interleave_yarn_norm", dir = temporary("nomtp")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(src)/config.json"))) as! [String: Any]
        json["num_nextn_predict_layers"] = 1
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: "\(dir)/config.json"))
        try FileManager.default.copyItem(atPath: "\(src)/model.safetensors", toPath: "\(dir)/model.safetensors")
        let w = try HFDirectory.Weights(dir)
        #expect(w.droppedMTP && w.config.numNextnPredictLayers == 0)
        let model = try HFDirectory.load(dir, positions: 64)
        #expect(model.mtp == nil)
    }

    /// DeepSeek's release layout: classic keys, the MTP module as layer 3 with the release's
    /// copies of the embedding and head. Its tensors load; the main model's outputs are the
    /// first case's; the MTP loss matches the independent reference.
    @Test func releaseLayoutLoadsItsMTPModule() throws {
        let dir = "\(Self.root)/release_mtp"
        let model = try HFDirectory.load(dir, positions: 64)
        #expect(model.config.numNextnPredictLayers == 1)
        let mtp = try #require(model.mtp)
        let file = try SafeTensorsFile(path: "\(dir)/model.safetensors")
        #expect(mtp.depths[0].eh_proj.weight.values == (try file.tensor("model.layers.3.eh_proj.weight")).values)
        #expect(model.routerBiases.map(\.name).contains("model.layers.3.mlp.gate.e_score_correction_bias"))
        let names = Set(model.namedParameters().map(\.0))
        for n in ["model.layers.3.enorm.weight", "model.layers.3.hnorm.weight", "model.layers.3.shared_head.norm.weight",
                  "model.layers.3.self_attn.kv_b_proj.weight", "model.layers.3.mlp.experts.7.down_proj.weight"] {
            #expect(names.contains(n), "\(n)")
        }
        let expected = try SafeTensorsFile(path: "\(dir)/expected.safetensors")
        let (ids, shape) = try SafeTensorsFile(path: "\(dir)/input.safetensors").integers("input_ids")
        let out = withNoGrad { model.forward(ids, batch: shape[0], length: shape[1]) }
        #expect(maxAbs(out.logits, try expected.tensor("logits")) <= 1e-4)
        let m = try #require(withNoGrad { model.mtpLoss(normed: out.normed, ids: ids,
                                                                        targets: DeepSeekForCausalLM.shiftedTargets(ids, batch: shape[0], length: shape[1]),
                                                                        batch: shape[0], length: shape[1]) })
        let ref = try expected.tensor("mtp_loss").item
        #expect(abs(m.loss.item - ref) <= 1e-4, "mtp loss \(m.loss.item) vs \(ref)")

        // Inference leaves the MTP depth out, unread; the main model is the same.
        let lean = try HFDirectory.load(dir, positions: 64, mtp: false)
        #expect(lean.mtp == nil && lean.config.numNextnPredictLayers == 0)
        #expect(withNoGrad { lean.forward(ids, batch: shape[0], length: shape[1]) }.logits.values == out.logits.values)

        // Saved back: the same tensors (copies and biases included), bit for bit.
        let out2 = temporary("release-save")
        defer { try? FileManager.default.removeItem(atPath: out2) }
        try HFDirectory.save(model, to: out2)
        let saved = try SafeTensorsFile(path: "\(out2)/model.safetensors")
        #expect(Set(saved.names) == Set(file.names))
        for n in file.names {
            #expect(try saved.tensor(n).values.map(\.bitPattern) == file.tensor(n).values.map(\.bitPattern), "\(n)")
        }
        let again = try HFDirectory.load(out2, positions: 64)
        #expect(again.routerBiasValues == model.routerBiasValues)
    }

    /// A DeepTrain checkpoint keeps the router biases (/state/router_bias) and gives them back.
    @Test func checkpointKeepsRouterBiases() throws {
        let model = try HFDirectory.load("\(Self.root)/interleave_yarn_norm", positions: 64)
        let path = temporary("bias") + ".h5"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try CheckpointStore.save(model, to: path)
        let (back, state) = try CheckpointStore.load(path, positions: 64)
        #expect(state.routerBiases == model.routerBiasValues && !state.routerBiases.isEmpty)
        #expect(back.routerBiasValues == model.routerBiasValues)
    }
}
