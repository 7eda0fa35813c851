import Foundation
import FileSafety
import Yams
import DeepSeek
import Optim
import Data
import Parallel
import Collectives
import Autograd

/// A training recipe (docs/design.md §3): the model, the layout, checkpointing, and stages run in
/// order. Every key, its default and its range are in `docs/recipes.md`; unknown keys are
/// errors naming the closest valid key.
package struct Recipe: Sendable {
    package var name: String
    package var seed: UInt64
    package var model: ModelSpec
    package var parallel: Parallel
    package var checkpoint: CheckpointSpec
    package var threads: Int?
    /// The matrix products' arithmetic (`precision`: fp32, or bf16 — docs/design.md §7).
    package var precision: MatmulPrecision = .fp32
    /// A tokenizer.json or a directory with tokenizer files and a chat template: post-training
    /// stages then render conversations with it (otherwise with the model directory's, or the
    /// built-in byte format).
    package var tokenizer: String?
    package var stages: [Stage]
    /// The recipe as YAML after `--set` overrides, written to the run directory and checkpoints.
    package var resolvedYAML: String

    package struct ModelSpec: Sendable {
        /// A preset name or a path to a Hugging Face config.json.
        package var source: String
        /// config.json keys to change (`hidden_size: 96`).
        package var overridesJSON: String

        package func config(relativeTo dir: String) throws -> DeepSeekConfig {
            var base: DeepSeekConfig
            if DeepSeekConfig.presetNames.contains(source) {
                base = try DeepSeekConfig.preset(source)
            } else {
                let paths = RecipePaths(directory: dir)
                // A Hugging Face model directory: its config.json (and, in the trainer, its weights).
                let p = paths.directory(source).map { ($0 as NSString).appendingPathComponent("config.json") } ?? paths.resolve(source)
                base = try DeepSeekConfig.load(p)
            }
            let overrides = try JSONSerialization.jsonObject(with: Data(overridesJSON.utf8)) as? [String: Any] ?? [:]
            if overrides.isEmpty { return base }
            var dict = try JSONSerialization.jsonObject(with: base.jsonData()) as! [String: Any]
            for (k, v) in overrides { dict[k] = v }
            let merged = try JSONDecoder().decode(DeepSeekConfig.self, from: JSONSerialization.data(withJSONObject: dict))
            try merged.validate(source: "model.overrides")
            return merged
        }
    }

    package struct Parallel: Sendable, Equatable {
        /// 0 means `auto`: the world size divided by pp.
        package var dp = 0, ep = 1, pp = 1, microbatches = 1
        /// Seconds a rank may go unheard before the job ends (`LivenessWatch`); nil: `off`.
        package var timeout: Double? = LivenessWatch.defaultTimeout
        /// What gradients and dispatched rows travel as (`CommDType`): fp32, or bf16 rounded
        /// at every node and row in every layout.
        package var commDType: CommDType = .fp32
        /// Whether each ep group's ranks share a node or span nodes (`EPPlacement`).
        package var epPlacement: EPPlacement = .withinNodes

        /// The layout on `world` ranks (dp `auto` resolved).
        package func layout(world: Int) -> Layout {
            Layout(dp: dp == 0 ? Swift.max(1, world / pp) : dp, ep: ep, pp: pp, microbatches: microbatches)
        }
    }

    package struct CheckpointSpec: Sendable, Equatable {
        /// Relative to the run directory.
        package var dir = "checkpoints"
        /// Optimizer steps between checkpoints (0: only at the end of each stage).
        package var every = 0
        /// Newest checkpoints kept.
        package var keep = 3
    }

    package struct Stage: Sendable {
        package var kind: StageKind
        package var name: String
        package var data: String
        package var steps: Int
        package var batchSize: Int
        package var seqLen: Int
        package var lr: Double
        package var minLRRatio: Double
        package var warmup: Int
        package var schedule: ScheduleKind
        package var adam: AdamW.Config
        package var clip: Double
        package var alphas: (expert: Double?, device: Double, communication: Double)
        package var capacityFactor: Double?
        package var neverDropFraction: Double
        package var evalEvery: Int
        package var evalBatches: Int
        package var logEvery: Int
        package var maxNaNSteps: Int
        package var initFrom: String?
        /// Held-out problems for answer accuracy and mean reward.
        package var evalSamples = 200
        /// V3 aux-loss-free balancing's γ (`moe.bias_update_speed`; 0: the router biases stay).
        package var biasUpdateSpeed = 0.0
        /// MTP depths trained (`mtp.depth`, at most the model's `num_nextn_predict_layers`;
        /// 0: off) and their loss weight λ (`mtp.weight`).
        package var mtpDepth = 0
        package var mtpWeight = 0.3

        /// The SFT settings, for an SFT stage.
        package var sft: SFTSettings? {
            if case .sft(let s) = kind { return s }
            return nil
        }

        /// The reward-model settings, for a reward stage.
        package var reward: RewardSettings? {
            if case .reward(let r) = kind { return r }
            return nil
        }

        /// The GRPO settings, for a GRPO stage.
        package var grpo: GRPOSettings? {
            if case .grpo(let g) = kind { return g }
            return nil
        }

        package func lrSchedule() -> LRSchedule {
            switch schedule {
            case .constant: return .constant(peak: lr, warmup: warmup)
            case .deepseek: return .deepseekStep(peak: lr, warmup: warmup, total: steps, factor: 0.316)
            case .cosine: return .cosine(peak: lr, warmup: warmup, total: steps, minRatio: minLRRatio)
            }
        }
    }

    /// A recipe is a page of YAML; a larger file is a mistake or an attack.
    static let recipeBytes = 1 << 20

    /// Reads `path`, applies `overrides` ("a.b=c"), and checks every key and value.
    package static func load(_ path: String, overrides: [String] = []) throws -> Recipe {
        let data: Data
        do { data = try readBoundedFile(path, limit: recipeBytes, what: "a recipe") } catch let e as BoundedFileError {
            throw RecipeError(file: path, line: nil, column: nil, path: "", message: e.message)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw RecipeError(file: path, line: nil, column: nil, path: "", message: "cannot be read as UTF-8 text")
        }
        return try parse(text, file: path, overrides: overrides)
    }

    package static func parse(_ text: String, file: String, overrides: [String] = []) throws -> Recipe {
        let root = try composeWithOverrides(text, file: file, overrides: overrides)
        let top = try YAMLObject(file: file, path: "", node: root)
        var r = Recipe(name: "", seed: 0, model: ModelSpec(source: "", overridesJSON: "{}"), parallel: Parallel(),
                       checkpoint: CheckpointSpec(), threads: nil, tokenizer: nil, stages: [], resolvedYAML: "")
        r.name = try top.string("name")
        guard !r.name.isEmpty, r.name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
            throw top.fail(top.mapping["name"], "name", "is \(quoted(r.name)); expected letters, digits, - _ . (it names the run directory)")
        }
        r.seed = UInt64(try top.int("seed", default: 0, min: 0))
        r.threads = try top.optionalInt("threads", min: 1)
        r.precision = MatmulPrecision(rawValue: try top.string("precision", default: "fp32", allowed: MatmulPrecision.allCases.map(\.rawValue)))!
        r.tokenizer = try top.optionalString("tokenizer")
        r.model = try parseModel(top)
        if let p = try top.object("parallel") { r.parallel = try parseParallel(p) }
        if let c = try top.object("checkpoint") {
            r.checkpoint.dir = try c.string("dir", default: "checkpoints")
            r.checkpoint.every = try c.int("every", default: 0, min: 0)
            r.checkpoint.keep = try c.int("keep", default: 3, min: 1)
            try c.finish()
        }
        guard let stageNodes = try top.list("stages"), !stageNodes.isEmpty else {
            throw top.fail(nil, "stages", "is required: a list of stages (kind: pretrain, sft, grpo or reward)")
        }
        for (i, n) in stageNodes.enumerated() {
            r.stages.append(try parseStage(YAMLObject(file: file, path: "stages[\(i)]", node: n)))
        }
        try top.finish()
        // A reward model is another model (a scalar head, no lm_head): its recipe trains it alone.
        if r.trainsRewardModel, let i = r.stages.firstIndex(where: { $0.reward == nil }) {
            throw RecipeError(file: file, line: nil, column: nil, path: "stages[\(i)].kind",
                              message: "is \(r.stages[i].kind.name.rawValue) in a recipe with reward stages; a reward model trains in a "
                                + "recipe of its own, starting from a language model's checkpoint or directory (init: or model:)")
        }
        for (i, st) in r.stages.enumerated() where st.batchSize % r.parallel.microbatches != 0 {
            throw RecipeError(file: file, line: nil, column: nil, path: "stages[\(i)].batch_size",
                              message: "is \(st.batchSize), not divisible by parallel.microbatches = \(r.parallel.microbatches)")
        }
        r.resolvedYAML = (try? Yams.serialize(node: root)) ?? text
        return r
    }

    /// Whether the recipe trains a reward model (its stages are `reward`).
    package var trainsRewardModel: Bool { stages.contains { $0.reward != nil } }

    /// The recipe's YAML tree with `--set` overrides ("a.b=c") applied.
    static func composeWithOverrides(_ text: String, file: String, overrides: [String]) throws -> Node {
        var root: Node
        do {
            guard let n = try Yams.compose(yaml: text) else {
                throw RecipeError(file: file, line: nil, column: nil, path: "", message: "is empty; expected a recipe mapping")
            }
            root = n
        } catch let e as YamlError {
            throw yamlError(e, file: file)
        }
        for o in overrides {
            guard let eq = o.firstIndex(of: "=") else {
                throw RecipeError(file: "--set", line: nil, column: nil, path: o, message: "expected key.path=value")
            }
            let keyPath = String(o[..<eq]), valueText = String(o[o.index(after: eq)...])
            let value: Node
            do { value = try Yams.compose(yaml: valueText) ?? Node("") } catch let e as YamlError { throw yamlError(e, file: "--set \(o)") }
            root = try applyOverride(root, path: keyPath.split(separator: ".").map(String.init), value: value, file: file, full: keyPath)
        }
        return root
    }

    /// `model:`: a preset or config path, or a mapping {preset|config, overrides}.
    static func parseModel(_ top: YAMLObject) throws -> ModelSpec {
        var spec = ModelSpec(source: "", overridesJSON: "{}")
        switch top.raw("model") {
        case .some(.scalar(let s)):
            spec.source = s.string
        case .some(let n):
            let m = try YAMLObject(file: top.file, path: "model", node: n)
            spec.source = try m.string("preset", default: "")
            if spec.source.isEmpty { spec.source = try m.string("config") } else { _ = m.raw("config") }
            let o = try m.freeMapping("overrides")
            spec.overridesJSON = String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self)
            try m.finish()
        case .none:
            throw top.fail(nil, "model", "is required: a preset (\(DeepSeekConfig.presetNames.joined(separator: ", "))), a config.json path, or {preset|config, overrides}")
        }
        return spec
    }

    /// `parallel:` (dp `auto` is 0: the world size divided by pp).
    static func parseParallel(_ p: YAMLObject) throws -> Parallel {
        var parallel = Parallel()
        if case .scalar(let v)? = p.mapping["dp"], v.string == "auto" {
            _ = p.raw("dp")
            parallel.dp = 0
        } else {
            parallel.dp = try p.int("dp", default: 0, min: 1)
        }
        parallel.ep = try p.int("ep", default: 1, min: 1)
        parallel.pp = try p.int("pp", default: 1, min: 1)
        parallel.microbatches = try p.int("microbatches", default: 1, min: 1)
        if case .scalar(let v)? = p.mapping["timeout"], v.string == "off" {
            _ = p.raw("timeout")
            parallel.timeout = nil
        } else {
            parallel.timeout = try p.double("timeout", default: LivenessWatch.defaultTimeout, min: 1, max: 86_400)
        }
        parallel.epPlacement = EPPlacement(rawValue: try p.string("ep_placement", default: EPPlacement.withinNodes.rawValue,
                                                                   allowed: EPPlacement.allCases.map(\.rawValue)))!
        parallel.commDType = CommDType(rawValue: try p.string("comm_dtype", default: "fp32", allowed: CommDType.allCases.map(\.rawValue)))!
        try p.finish()
        return parallel
    }

    static func parseStage(_ s: YAMLObject) throws -> Stage {
        let kindName = StageKind.Name(rawValue: try s.string("kind", allowed: StageKind.Name.allCases.map(\.rawValue)))!
        var sft = SFTSettings()
        if kindName == .sft { sft.epochs = try s.optionalInt("epochs", min: 1) }
        let steps = sft.epochs != nil && s.mapping["steps"] == nil ? 0 : try s.int("steps", min: 1)
        var st = Stage(kind: .pretrain, name: try s.string("name", default: kindName.rawValue), data: try s.string("data"),
                       steps: steps, batchSize: try s.int("batch_size", default: 16, min: 1),
                       seqLen: try s.int("seq_len", default: 64, min: 2), lr: 0, minLRRatio: 0.1, warmup: 0, schedule: .cosine,
                       adam: AdamW.Config(), clip: 1.0, alphas: (nil, 0, 0), capacityFactor: nil, neverDropFraction: 0.1,
                       evalEvery: 0, evalBatches: 4, logEvery: 10, maxNaNSteps: 5, initFrom: try s.optionalString("init"))
        try parseOptimizer(s, into: &st)
        try parseBlocks(s, into: &st)
        if kindName == .sft { sft.packing = try s.bool("packing", default: false) }
        st.logEvery = try s.int("log_every", default: 10, min: 1)
        st.maxNaNSteps = try s.int("max_nan_steps", default: 5, min: 1)
        st.evalSamples = try s.int("eval_samples", default: 200, min: 1)
        switch kindName {
        case .pretrain: st.kind = .pretrain
        case .sft:
            sft.heldOut = try parseHeldOut(s)
            st.kind = .sft(sft)
        case .grpo:
            let heldOut = try parseHeldOut(s)
            var g = try s.object("grpo").map(parseGRPO) ?? GRPOSettings()
            g.heldOut = heldOut
            st.kind = .grpo(g)
        case .reward:
            var r = RewardSettings()
            r.heldOut = try parseHeldOut(s)
            if let o = try s.object("reward") {
                r.centerRewardsCoefficient = try o.optionalDouble("center_rewards_coefficient", min: 0)
                try o.finish()
            }
            st.kind = .reward(r)
        }
        try checkDataFits(s, st)
        if sft.epochs != nil && st.data.hasPrefix("synthetic:") {
            throw s.fail(s.mapping["epochs"], "epochs", "needs a chat .jsonl file (the built-in chat data has no end); give steps")
        }
        try s.finish()
        return st
    }

    /// `optimizer:` (required: at least its `lr`).
    static func parseOptimizer(_ s: YAMLObject, into st: inout Stage) throws {
        guard let o = try s.object("optimizer") else { throw s.fail(nil, "optimizer", "is required (at least optimizer.lr)") }
        st.lr = try o.double("lr", min: 0)
        st.adam.beta1 = Float(try o.double("beta1", default: 0.9, min: 0, max: 0.999999))
        st.adam.beta2 = Float(try o.double("beta2", default: 0.95, min: 0, max: 0.999999))
        st.adam.eps = Float(try o.double("eps", default: 1e-8, min: 0, exclusiveMin: true))
        st.adam.weightDecay = Float(try o.double("weight_decay", default: 0.1, min: 0))
        st.clip = try o.double("clip", default: 1.0, min: 0)
        try o.finish()
    }

    /// The optional blocks every kind shares: `schedule:`, `moe:`, `mtp:`, `eval:`.
    static func parseBlocks(_ s: YAMLObject, into st: inout Stage) throws {
        if let o = try s.object("schedule") {
            st.schedule = ScheduleKind(rawValue: try o.string("kind", default: "cosine", allowed: ScheduleKind.allCases.map(\.rawValue)))!
            st.warmup = try o.int("warmup", default: 0, min: 0)
            st.minLRRatio = try o.double("min_ratio", default: 0.1, min: 0, max: 1)
            try o.finish()
        }
        if let o = try s.object("moe") {
            st.alphas.expert = try o.optionalDouble("alpha_expert", min: 0)
            st.alphas.device = try o.double("alpha_device", default: 0, min: 0)
            st.alphas.communication = try o.double("alpha_comm", default: 0, min: 0)
            st.capacityFactor = try o.optionalDouble("capacity_factor", min: 0, exclusiveMin: true)
            st.neverDropFraction = try o.double("never_drop_fraction", default: 0.1, min: 0, max: 1)
            st.biasUpdateSpeed = try o.double("bias_update_speed", default: 0, min: 0)
            try o.finish()
        }
        if let o = try s.object("mtp") {
            st.mtpDepth = try o.int("depth", default: 1, min: 0)
            st.mtpWeight = try o.double("weight", default: 0.3, min: 0)
            try o.finish()
        }
        if let o = try s.object("eval") {
            st.evalEvery = try o.int("every", default: 0, min: 0)
            st.evalBatches = try o.int("batches", default: 4, min: 1)
            try o.finish()
        }
    }

    /// `eval_data` or `eval_fraction` of a post-training stage.
    static func parseHeldOut(_ s: YAMLObject) throws -> HeldOutData {
        let h = HeldOutData(evalData: try s.optionalString("eval_data"),
                            evalFraction: try s.optionalDouble("eval_fraction", min: 0, exclusiveMin: true))
        if let f = h.evalFraction, f >= 1 { throw s.fail(s.mapping["eval_fraction"], "eval_fraction", "is \(f); expected a fraction below 1") }
        if h.evalData != nil && h.evalFraction != nil {
            throw s.fail(s.mapping["eval_fraction"], "eval_fraction", "goes with a training file; eval_data already names the evaluation data")
        }
        return h
    }

    /// A GRPO stage's `grpo:` block.
    static func parseGRPO(_ o: YAMLObject) throws -> GRPOSettings {
        var g = GRPOSettings()
        g.numGenerations = try o.int("num_generations", default: 8, min: 2)
        g.promptsPerStep = try o.int("prompts_per_step", default: 8, min: 1)
        g.maxCompletionLength = try o.int("max_completion_length", default: 8, min: 1)
        g.temperature = try o.double("temperature", default: 1.0, min: 0, exclusiveMin: true)
        g.topP = try o.double("top_p", default: 1.0, min: 0, max: 1, exclusiveMin: true)
        g.beta = try o.double("beta", default: 0.04, min: 0)
        g.epsilon = try o.double("epsilon", default: 0.2, min: 0, max: 1)
        g.epsilonHigh = try o.double("epsilon_high", default: g.epsilon, min: 0)
        g.lossType = GRPOObjective.LossType(rawValue: try o.string("loss_type", default: "dapo",
                                                                   allowed: GRPOObjective.LossType.allCases.map(\.rawValue)))!
        g.importanceSampling = GRPOObjective.ImportanceSampling(rawValue: try o.string(
            "importance_sampling_level", default: "token", allowed: GRPOObjective.ImportanceSampling.allCases.map(\.rawValue)))!
        g.topEntropyQuantile = try o.double("top_entropy_quantile", default: 1.0, min: 0, max: 1)
        g.soft.sapoTemperaturePos = try o.double("sapo_temperature_pos", default: 1.0, min: 0, exclusiveMin: true)
        g.soft.sapoTemperatureNeg = try o.double("sapo_temperature_neg", default: 1.05, min: 0, exclusiveMin: true)
        g.soft.vespoKPos = try o.double("vespo_k_pos", default: 2.0, min: 0)
        g.soft.vespoLambdaPos = try o.double("vespo_lambda_pos", default: 3.0, min: 0)
        g.soft.vespoKNeg = try o.double("vespo_k_neg", default: 3.0, min: 0)
        g.soft.vespoLambdaNeg = try o.double("vespo_lambda_neg", default: 2.0, min: 0)
        g.numIterations = try o.int("num_iterations", default: 1, min: 1)
        g.maskTruncated = try o.bool("mask_truncated_completions", default: false)
        g.routerReplay = try o.bool("router_replay", default: false)
        if try o.bool("importance_sampling_correction", default: false) {
            let mode = try o.string("importance_sampling_mode", default: "sequence_mask",
                                    allowed: SamplingCorrection.Mode.allCases.map(\.rawValue))
            g.samplingCorrection = SamplingCorrection(mode: SamplingCorrection.Mode(rawValue: mode)!,
                                                      clipMin: try o.optionalDouble("importance_sampling_clip_min", min: 0),
                                                      clipMax: try o.optionalDouble("importance_sampling_clip_max", min: 0) ?? 3)
        } else {
            for key in ["importance_sampling_mode", "importance_sampling_clip_min", "importance_sampling_clip_max"] where o.mapping[key] != nil {
                throw o.fail(o.mapping[key], key, "needs importance_sampling_correction: true")
            }
        }
        g.scaleRewards = GRPOObjective.RewardScaling(rawValue: try o.string("scale_rewards", default: "group",
                                                                            allowed: GRPOObjective.RewardScaling.allCases.map(\.rawValue)))!
        if let list = try o.list("rewards") {
            g.rewards = try list.enumerated().map { i, n in try parseReward(YAMLObject(file: o.file, path: "\(o.path).rewards[\(i)]", node: n)) }
            if g.rewards.isEmpty { throw o.fail(nil, "rewards", "is empty; give at least one reward (kind: exact, format, command or model)") }
        }
        if let c = try o.optionalString("control") {
            guard let control = GRPOSettings.Control(rawValue: c) else {
                throw o.fail(o.mapping["control"], "control", "is \(quoted(c)); the only control is shuffle_rewards")
            }
            g.control = control
        }
        try o.finish()
        return g
    }

    /// One item of `grpo.rewards`.
    static func parseReward(_ r: YAMLObject) throws -> RewardSpec {
        let k = try r.string("kind", allowed: ["exact", "format", "command", "model"])
        let weight = try r.double("weight", default: 1.0)
        let kind: RewardSpec.Kind
        switch k {
        case "command": kind = .command(try r.string("command"))
        case "model": kind = .model(checkpoint: try r.string("checkpoint"))
        case "format":
            let p = try r.optionalString("pattern")
            if let p {
                do { _ = try TokenRegex(p) } catch {
                    throw r.fail(r.mapping["pattern"], "pattern", "is not a regular expression this engine takes: \(error)")
                }
            }
            kind = .format(pattern: p)
        default: kind = .exact
        }
        try r.finish()
        return RewardSpec(kind: kind, weight: weight)
    }

    /// Whether `data` is something the stage's kind reads.
    static func checkDataFits(_ s: YAMLObject, _ st: Stage) throws {
        let data = st.data, fits: Bool, reads: String
        switch st.kind {
        case .pretrain:
            fits = !data.hasSuffix(".jsonl") && !data.hasPrefix("synthetic:arithmetic-chat") && data != "synthetic:arithmetic-prompts"
            reads = "synthetic:arithmetic or a `deeptrain prepare` directory"
        case .sft:
            fits = data == "synthetic:arithmetic-chat" || data == "synthetic:arithmetic-chat-off-by-one" || data.hasSuffix(".jsonl")
                || ChatPrepare.conversations(in: data) != nil
            reads = "synthetic:arithmetic-chat, synthetic:arithmetic-chat-off-by-one, a chat .jsonl file "
                + "or a directory `deeptrain prepare` made of one"
        case .grpo:
            fits = data == "synthetic:arithmetic-prompts" || data.hasSuffix(".jsonl")
            reads = "synthetic:arithmetic-prompts or a prompt .jsonl file"
        case .reward:
            fits = data == PostTrainingData.arithmeticPreferences || data.hasSuffix(".jsonl")
            reads = "\(PostTrainingData.arithmeticPreferences) or a preference .jsonl file ({\"chosen\", \"rejected\"} per line)"
        }
        guard fits else { throw s.fail(s.mapping["data"], "data", "is \(quoted(data)); a \(st.kind.name.rawValue) stage reads \(reads)") }
    }

    static func yamlError(_ e: YamlError, file: String) -> RecipeError {
        switch e {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _), let .composer(context, problem, mark, _):
            return RecipeError(file: file, line: mark.line, column: mark.column, path: "",
                               message: "malformed YAML: \(problem)" + (context.map { " (\($0.text))" } ?? ""))
        default:
            return RecipeError(file: file, line: nil, column: nil, path: "", message: "malformed YAML: \(e)")
        }
    }
}
