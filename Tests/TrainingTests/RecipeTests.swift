import Foundation
import Testing
@testable import Training
@testable import Checkpoint
import Autograd

@Suite struct RecipeTests {
    let good = """
    name: t
    seed: 3
    model: tiny
    stages:
      - kind: pretrain
        data: synthetic:arithmetic
        steps: 10
        optimizer:
          lr: 1.0e-3
    """

    func error(_ text: String, overrides: [String] = []) -> String {
        do {
            _ = try Recipe.parse(text, file: "r.yaml", overrides: overrides)
            return "accepted"
        } catch {
            return "\(error)"
        }
    }

    @Test func defaultsAndOverrides() throws {
        let r = try Recipe.parse(good, file: "r.yaml", overrides: ["stages.0.steps=25", "stages.0.optimizer.lr=0.5", "checkpoint.keep=7"])
        #expect(r.name == "t" && r.seed == 3 && r.model.source == "tiny")
        #expect(r.stages[0].steps == 25 && r.stages[0].lr == 0.5 && r.checkpoint.keep == 7)
        #expect(r.stages[0].batchSize == 16 && r.stages[0].seqLen == 64 && r.stages[0].schedule == .cosine)
        #expect(r.resolvedYAML.contains("steps: 25"))
    }

    @Test func unknownKeyNamesItTheLineAndTheClosestKey() {
        let e = error(good.replacingOccurrences(of: "    steps: 10", with: "    steps: 10\n    batchsize: 8"))
        #expect(e.contains("r.yaml:8:") && e.contains("stages[0].batchsize") && e.contains("unknown key") && e.contains("\"batch_size\""), "\(e)")
        let nested = error(good.replacingOccurrences(of: "      lr: 1.0e-3", with: "      lr: 1.0e-3\n      wieght_decay: 0.1"))
        #expect(nested.contains("stages[0].optimizer.wieght_decay") && nested.contains("\"weight_decay\""), "\(nested)")
        let viaSet = error(good, overrides: ["stages.0.optimizer.learning_rate=1"])
        #expect(viaSet.contains("learning_rate") && viaSet.contains("unknown key"), "\(viaSet)")
    }

    @Test func parallelTimeoutIsSecondsOrOff() throws {
        #expect(try Recipe.parse(good, file: "r.yaml").parallel.timeout == 30)
        #expect(try Recipe.parse(good, file: "r.yaml", overrides: ["parallel.timeout=2.5"]).parallel.timeout == 2.5)
        #expect(try Recipe.parse(good, file: "r.yaml", overrides: ["parallel.timeout=off"]).parallel.timeout == nil)
        let low = error(good, overrides: ["parallel.timeout=0"])
        #expect(low.contains("parallel.timeout") && low.contains("at least 1"), "\(low)")
        let word = error(good, overrides: ["parallel.timeout=never"])
        #expect(word.contains("parallel.timeout") && word.contains("expected a number"), "\(word)")
    }

    /// The two communication keys take their closed choices and name themselves when wrong.
    @Test func commDTypeAndEPPlacementAreChoices() throws {
        let r = try Recipe.parse(good, file: "r.yaml")
        #expect(r.parallel.commDType == .fp32 && r.parallel.epPlacement == .withinNodes)
        let set = try Recipe.parse(good, file: "r.yaml", overrides: ["parallel.comm_dtype=bf16", "parallel.ep_placement=across_nodes"])
        #expect(set.parallel.commDType == .bf16 && set.parallel.epPlacement == .acrossNodes)
        let dtype = error(good, overrides: ["parallel.comm_dtype=fp8"])
        #expect(dtype.contains("parallel.comm_dtype") && dtype.contains("fp32, bf16"), "\(dtype)")
        let placement = error(good, overrides: ["parallel.ep_placement=acros_nodes"])
        #expect(placement.contains("parallel.ep_placement") && placement.contains("across_nodes"), "\(placement)")
    }

    /// `precision` is a closed choice, fp32 unless set.
    @Test func precisionIsAChoice() throws {
        #expect(try Recipe.parse(good, file: "r.yaml").precision == .fp32)
        #expect(try Recipe.parse(good, file: "r.yaml", overrides: ["precision=bf16"]).precision == .bf16)
        let wrong = error(good, overrides: ["precision=fp16"])
        #expect(wrong.contains("precision") && wrong.contains("fp32, bf16"), "\(wrong)")
    }

    @Test func malformedYAMLGivesLineAndColumn() {
        let e = error("name: t\nstages:\n  - kind: [pretrain\n")
        #expect(e.contains("r.yaml:") && e.contains("malformed YAML"), "\(e)")
        let parts = e.split(separator: ":")
        #expect(parts.count > 2 && Int(parts[1]) != nil && Int(parts[2]) != nil, "line and column: \(e)")
    }

    @Test func wrongTypesAndRanges() {
        let t = error(good.replacingOccurrences(of: "steps: 10", with: "steps: ten"))
        #expect(t.contains("stages[0].steps") && t.contains("integer") && t.contains(":7:"), "\(t)")
        let r = error(good.replacingOccurrences(of: "steps: 10", with: "steps: 0"))
        #expect(r.contains("at least 1"), "\(r)")
        let k = error(good.replacingOccurrences(of: "kind: pretrain", with: "kind: pretrian"))
        #expect(k.contains("\"pretrain\""), "\(k)")
        let missing = error(good.replacingOccurrences(of: "model: tiny\n", with: ""))
        #expect(missing.contains("model") && missing.contains("required"), "\(missing)")
    }

    /// A reward recipe trains a reward model alone; its data is preference pairs.
    @Test func rewardStagesStandAlone() throws {
        let reward = "  - kind: reward\n    data: synthetic:arithmetic-preferences\n    steps: 1\n    optimizer:\n      lr: 1.0e-4\n"
        let r = try Recipe.parse("name: r\nmodel: tiny\nstages:\n" + reward + "    reward:\n      center_rewards_coefficient: 0.01\n",
                                 file: "r.yaml")
        #expect(r.trainsRewardModel && r.stages[0].reward?.centerRewardsCoefficient == 0.01)
        let mixed = error("name: r\nmodel: tiny\nstages:\n" + reward
                          + "  - kind: sft\n    data: synthetic:arithmetic-chat\n    steps: 1\n    optimizer:\n      lr: 1.0e-4\n")
        #expect(mixed.contains("stages[1].kind") && mixed.contains("a reward model trains in a recipe of its own"), "\(mixed)")
        let data = error("name: r\nmodel: tiny\nstages:\n" + reward.replacingOccurrences(of: "synthetic:arithmetic-preferences",
                                                                                              with: "synthetic:arithmetic-prompts"))
        #expect(data.contains("a reward stage reads") && data.contains("preference"), "\(data)")
    }

    /// TRL's newer GRPO knobs parse, and their ranges and choices are checked by name.
    @Test func grpoKnobsParseAndAreChecked() throws {
        let grpo = "name: g\nmodel: tiny\nstages:\n  - kind: grpo\n    data: synthetic:arithmetic-prompts\n    steps: 1\n    optimizer:\n      lr: 1.0e-4\n    grpo:\n"
        let r = try Recipe.parse(grpo + "      loss_type: sapo\n      importance_sampling_level: sequence\n      top_entropy_quantile: 0.2\n"
                                 + "      sapo_temperature_neg: 2\n      vespo_k_pos: 1.5\n", file: "r.yaml")
        let g = try #require(r.stages[0].grpo)
        #expect(g.lossType == .sapo && g.importanceSampling == .sequence && g.topEntropyQuantile == 0.2)
        #expect(g.soft.sapoTemperatureNeg == 2 && g.soft.vespoKPos == 1.5 && g.soft.vespoLambdaNeg == 2)
        let level = error(grpo + "      importance_sampling_level: seq\n")
        #expect(level.contains("importance_sampling_level") && level.contains("token, sequence"), "\(level)")
        let q = error(grpo + "      top_entropy_quantile: 1.5\n")
        #expect(q.contains("top_entropy_quantile") && q.contains("1"), "\(q)")
        let tau = error(grpo + "      sapo_temperature_pos: 0\n")
        #expect(tau.contains("sapo_temperature_pos"), "\(tau)")
        let model = error(grpo + "      rewards:\n        - kind: model\n          weight: 1\n")
        #expect(model.contains("rewards[0].checkpoint") && model.contains("required"), "\(model)")
        let alone = error(grpo + "      importance_sampling_clip_max: 2\n")
        #expect(alone.contains("importance_sampling_clip_max") && alone.contains("needs importance_sampling_correction: true"), "\(alone)")
        let tis = try Recipe.parse(grpo + "      importance_sampling_correction: true\n      importance_sampling_mode: token_truncate\n", file: "r.yaml")
        #expect(tis.stages[0].grpo?.samplingCorrection == SamplingCorrection(mode: .tokenTruncate, clipMin: nil, clipMax: 3))
    }

    @Test func modelOverridesAreValidated() throws {
        let r = try Recipe.parse(good.replacingOccurrences(of: "model: tiny", with: "model:\n  preset: tiny\n  overrides:\n    num_hidden_layers: 2"),
                                 file: "r.yaml")
        #expect(try r.model.config(relativeTo: ".").numHiddenLayers == 2)
        let bad = try Recipe.parse(good.replacingOccurrences(of: "model: tiny", with: "model:\n  preset: tiny\n  overrides:\n    topk_method: best"),
                                   file: "r.yaml")
        #expect(throws: (any Error).self) { try bad.model.config(relativeTo: ".") }
    }

    @Test func shippedRecipesParse() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("recipes").path
        for f in try FileManager.default.contentsOfDirectory(atPath: dir) where f.hasSuffix(".yaml") {
            let r = try Recipe.load("\(dir)/\(f)")
            // finetune-hf.yaml's model is the directory `make finetune-hf` writes under runs/
            // (FinetuneHFTests runs it with that directory made first).
            if r.model.source.hasPrefix("runs/") && !FileManager.default.fileExists(atPath: r.model.source) { continue }
            _ = try r.model.config(relativeTo: dir)
        }
    }

    @Test func sha256KnownAnswers() {
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex([UInt8]()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        let long = Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)
        #expect(SHA256.hex(long) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }
}
