import Foundation
import Testing
@testable import Checkpoint
@testable import FileFormats
@testable import DeepSeek
@testable import Autograd

/// Model directories as save_pretrained writes them: bf16 shards with an index, the tokenizer
/// files beside them, and the errors a broken directory gets.
@Suite struct HFDirectoryTests {
    static let fixture = CheckpointStoreTests.fixture

    func tempDir() -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("dt-hf-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    @Test func bf16IsRoundToNearestEven() {
        #expect(SafeTensorsFile.bfloat16Bits(1.0) == 0x3F80)
        #expect(SafeTensorsFile.bfloat16Bits(Float(bitPattern: 0x3F80_8000)) == 0x3F80)   // tie, even stays
        #expect(SafeTensorsFile.bfloat16Bits(Float(bitPattern: 0x3F81_8000)) == 0x3F82)   // tie, odd rounds up
        #expect(SafeTensorsFile.bfloat16Bits(Float(bitPattern: 0x3F80_8001)) == 0x3F81)
        #expect(SafeTensorsFile.bfloat16Bits(-.infinity) == 0xFF80)
        #expect(Float(bitPattern: UInt32(SafeTensorsFile.bfloat16Bits(.nan)) << 16).isNaN)
    }

    /// Checkpoint → sharded bf16 directory with an index and the tokenizer files → checkpoint:
    /// every weight is its bf16 rounding, the files come back byte for byte.
    @Test func shardedBF16RoundTripCarriesTheTokenizer() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = try HFDirectory.load(Self.fixture, positions: 8)
        let files = [("tokenizer.json", Data("{\"model\": {}}".utf8)), ("chat_template.jinja", Data("{{ messages }}".utf8))]
        try CheckpointStore.save(model, tokenizerFiles: files, to: "\(dir)/ck.h5")
        let stored = try CheckpointStore.tokenizerFiles("\(dir)/ck.h5")
        #expect(stored.map(\.0) == ["chat_template.jinja", "tokenizer.json"])
        #expect(stored.first { $0.0 == "tokenizer.json" }?.1 == files[0].1)
        try HFDirectory.save(model, to: "\(dir)/hf", shardBytes: 20_000, dtype: .bf16, tokenizerFiles: stored)
        let names = try FileManager.default.contentsOfDirectory(atPath: "\(dir)/hf").sorted()
        let shards = names.filter { $0.hasSuffix(".safetensors") }
        #expect(shards.count > 2 && shards.allSatisfy { $0.hasPrefix("model-0000") && $0.contains("-of-") }, "\(names)")
        #expect(names.contains("model.safetensors.index.json") && names.contains("tokenizer.json") && names.contains("chat_template.jinja"))
        for s in shards {
            let st = try SafeTensorsFile(path: "\(dir)/hf/\(s)")
            #expect(st.entries.values.allSatisfy { $0.dtype == "BF16" })
        }
        let back = try HFDirectory.load("\(dir)/hf", positions: 8)
        let original = Dictionary(uniqueKeysWithValues: model.namedParameters())
        for (name, p) in back.namedParameters() {
            let want = original[name]!.values.map { Float(bitPattern: UInt32(SafeTensorsFile.bfloat16Bits($0)) << 16).bitPattern }
            #expect(p.values.map(\.bitPattern) == want, "\(name)")
        }
        #expect(try HFDirectory.tokenizerFiles("\(dir)/hf").map(\.0) == ["tokenizer.json", "chat_template.jinja"])
    }

    /// A reward model made from a language model keeps its body, gets a `score` head and no
    /// `lm_head`, and goes through a checkpoint and a `...ForSequenceClassification` directory
    /// (architectures, one label) and back bit for bit.
    @Test func rewardModelRoundTripsAsASequenceClassifier() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let lm = try HFDirectory.load(Self.fixture, positions: 8)
        let rm = lm.rewardModel(seed: 3, positions: 8)
        let names = rm.namedParameters().map(\.0)
        #expect(names.contains("score.weight") && !names.contains("lm_head.weight"))
        #expect(rm.namedParameters().first { $0.0 == "score.weight" }!.1.shape == [1, lm.config.hiddenSize])
        let body = Dictionary(uniqueKeysWithValues: lm.namedParameters())
        for (name, p) in rm.namedParameters() where name != "score.weight" { #expect(p.values == body[name]!.values, "\(name)") }
        try CheckpointStore.save(rm, tokenizerFiles: [], to: "\(dir)/rm.h5")
        let fromCheckpoint = try CheckpointStore.load("\(dir)/rm.h5", positions: 8).0
        #expect(fromCheckpoint.config == rm.config && fromCheckpoint.config.isRewardModel)
        try HFDirectory.save(fromCheckpoint, to: "\(dir)/hf", dtype: .f32)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/hf/config.json"))) as! [String: Any]
        #expect(config["architectures"] as? [String] == ["DeepseekV2ForSequenceClassification"])
        #expect(config["id2label"] as? [String: String] == ["0": "LABEL_0"])
        let back = try HFDirectory.load("\(dir)/hf", positions: 8)
        let want = Dictionary(uniqueKeysWithValues: rm.namedParameters())
        for (name, p) in back.namedParameters() { #expect(p.values == want[name]!.values, "\(name)") }
    }

    /// A reward model directory transformers wrote (AutoModelForSequenceClassification, one
    /// label: tools/golden_reward_model.py) loads as a reward model and scores each row at its
    /// last token: the score head on the final hidden state of DeepSeek's reference code.
    @Test func aTransformersRewardModelDirectoryScoresAtTheLastToken() throws {
        let fixtures = URL(fileURLWithPath: Self.fixture).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("reward")
        let model = try HFDirectory.load(fixtures.appendingPathComponent("model").path, positions: 32)
        #expect(model.config.isRewardModel && model.namedParameters().contains { $0.0 == "score.weight" })
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: fixtures.appendingPathComponent("expected.json"))) as! [String: Any]
        for (ids, want) in zip(json["sequences"] as! [[Int]], json["scores"] as! [Double]) {
            let logits = withNoGrad { model.forward(ids, batch: 1, length: ids.count).logits }
            let got = DeepSeekForCausalLM.rewards(logits, lastPositions: [ids.count - 1]).values[0]
            #expect(abs(Double(got) - want) <= 1e-4, "score \(got) vs transformers' \(want)")
        }
    }

    @Test func brokenDirectoriesAreNamed() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = try HFDirectory.load(Self.fixture, positions: 8)
        try HFDirectory.save(model, to: "\(dir)/a", shardBytes: 20_000, dtype: .f32)
        let shards = try FileManager.default.contentsOfDirectory(atPath: "\(dir)/a").filter { $0.hasSuffix(".safetensors") }.sorted()
        try FileManager.default.removeItem(atPath: "\(dir)/a/\(shards[1])")
        do {
            _ = try HFDirectory.load("\(dir)/a")
            Issue.record("loaded a directory missing a shard")
        } catch let e as CheckpointError {
            #expect(e.description.contains("index.json") && e.description.contains(shards[1]), "\(e)")
        }
        // A tensor missing from every shard.
        try HFDirectory.save(model, to: "\(dir)/b")
        let st = try SafeTensorsFile(path: "\(dir)/b/model.safetensors")
        let dropped = st.names[2]
        try SafeTensorsFile.write("\(dir)/b/model.safetensors", try st.names.filter { $0 != dropped }.map { ($0, .float(try st.tensor($0))) })
        do {
            _ = try HFDirectory.load("\(dir)/b")
            Issue.record("loaded a directory missing a tensor")
        } catch let e as CheckpointError {
            #expect(e.description.contains(dropped) && e.description.contains("model.safetensors"), "\(e)")
        }
        #expect(HFDirectory.parseSize("5GB") == 5_000_000_000 && HFDirectory.parseSize("2GiB") == 2 << 30 && HFDirectory.parseSize("100") == 100)
        #expect(HFDirectory.parseSize("lots") == nil && HFDirectory.parseSize("0") == nil)
    }
}
