import Foundation
import Testing
@testable import DeepSeek
@testable import FileFormats
@testable import Checkpoint
@testable import Autograd

/// The model against DeepSeek-V2's reference semantics (tools/golden_deepseek.py): logits,
/// hidden states, routing, loss, the expert balance loss and every parameter's gradient.
@Suite(.serialized) struct GoldenModelTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/deepseek").path
    static let cases = ["qlora_group_limited", "plain_q_greedy_norm"]

    @Test(arguments: cases)
    func matchesReference(_ name: String) throws {
        let dir = "\(Self.root)/\(name)"
        let model = try HFDirectory.load(dir, positions: 64)
        let out = try GoldenCheck.matches(model, dir: dir, name: name)
        #expect(out.moe.count == 2)
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
        #expect(try DeepSeekConfig.load("\(out)/config.json") == model.config)
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
