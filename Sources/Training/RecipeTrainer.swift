import Foundation
import Autograd
import NN
import Optim
import DeepSeek
import Checkpoint
import Data
import Collectives
import Parallel

/// Set by SIGINT/SIGTERM: the trainer finishes its step, writes a checkpoint and exits 0.
nonisolated(unsafe) var stopRequested: sig_atomic_t = 0

/// Runs a recipe's stages in order, on every rank of the process grid (one rank without
/// mpirun). Each step: the global batch in `microbatches` micro-batches spread over the grid
/// (`GridTrainer`), clipping, AdamW at the scheduled rate; metrics, evaluation and
/// checkpoints as the recipe says, written by world rank 0. Everything random is keyed by
/// (seed, step, index), never by rank, so a resumed run repeats the uninterrupted one bit for
/// bit, at any layout.
package final class RecipeTrainer {
    package let recipe: Recipe
    package let grid: ProcessGrid
    /// The run directory, on world rank 0 only (other ranks write nothing).
    package let runDirectory: RunDirectory?
    var run: RunDirectory { runDirectory! }
    var isRoot: Bool { grid.world.rank == 0 }
    /// Where the recipe's relative paths are found.
    let paths: RecipePaths
    let progress: (String) -> Void
    let isTerminal: Bool
    /// The tokenizer post-training renders with (a tokenizer.json or a model directory).
    var tokenizerSource: String?
    /// The tokenizer files that came with the model; every checkpoint carries them.
    var tokenizerFiles: [(String, Data)] = []

    package enum Outcome: Equatable { case finished, stopped }

    /// One row of the closing table.
    package struct StageSummary: Sendable {
        package var name: String
        package var kind: Recipe.StageKind.Name
        package var steps: Int
        package var seconds: Double
        package var lossBefore: Double?
        package var lossAfter: Double?
        package var accuracyBefore: Double?
        package var accuracyAfter: Double?
        package var rewardBefore: Double?
        package var rewardAfter: Double?
        package var samples: Int
    }
    package internal(set) var summaries: [StageSummary] = []

    package struct Failure: Error, CustomStringConvertible {
        package let description: String
        package let exitCode: Int32
    }

    package init(recipe: Recipe, recipePath: String, runDir: String, fresh: Bool, grid: ProcessGrid? = nil,
                progress: @escaping (String) -> Void) throws {
        self.recipe = recipe
        let g = try grid ?? ProcessGrid(layout: Layout(dp: 1, ep: 1, pp: 1, microbatches: recipe.parallel.microbatches), world: .solo,
                                        layers: recipe.model.config(relativeTo: (recipePath as NSString).deletingLastPathComponent).numHiddenLayers)
        self.grid = g
        paths = RecipePaths(recipePath: recipePath)
        tokenizerSource = recipe.tokenizer.map(paths.resolve)
        runDirectory = g.world.rank == 0
            ? try RunDirectory(path: runDir, checkpointDir: recipe.checkpoint.dir, resolvedRecipe: recipe.resolvedYAML, fresh: fresh) : nil
        self.progress = progress
        isTerminal = isatty(1) != 0 && !Communicator.launchedByMPI  // mpirun gives ranks a pty, but interleaves their output
    }

    /// DEEPTRAIN_FAULT_RANK and DEEPTRAIN_FAULT_STEP make that rank fail before that global
    /// step (the failure test of the launch).
    static var injectedFault: (rank: Int, step: Int)? {
        let env = ProcessInfo.processInfo.environment
        guard let s = env["DEEPTRAIN_FAULT_STEP"].flatMap(Int.init) else { return nil }
        return (env["DEEPTRAIN_FAULT_RANK"].flatMap(Int.init) ?? 0, s)
    }

    static func installSignalHandlers() {
        signal(SIGINT) { _ in stopRequested = 1 }
        signal(SIGTERM) { _ in stopRequested = 1 }
        // A parent may have started us with these blocked (a process spawned from a
        // libdispatch worker inherits its mask): unblock them, or the request never arrives.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    /// `resume`: a checkpoint path to continue from (its stage, step, weights and optimizer).
    package func train(resume: String?) throws -> Outcome {
        RecipeTrainer.installSignalHandlers()
        var config = try recipe.model.config(relativeTo: paths.directory)
        if recipe.trainsRewardModel { (config.numLabels, config.numNextnPredictLayers) = (1, 0) }
        let positions = rotaryPositions()
        // A rank builds, initialises and loads only its part: its stage, its ep block's experts.
        let holds = grid.holds(experts: config.nRoutedExperts)
        var start = StartPoint()
        try logPlacement()
        logRoutingNodes(config)
        var model = try startingModel(config, resume: resume, positions: positions, holds: holds, start: &start)
        try takeRecipeTokenizer()
        var globalStep = start.globalStep, tokens = start.tokens
        for si in start.stage..<recipe.stages.count {
            let stage = recipe.stages[si]
            if si > start.stage || resume == nil, let initPath = stage.initFrom {
                model = try initialModel(initPath, config: config, positions: positions, holds: holds)
            }
            let outcome = try runStage(stage, index: si, model: model, from: si == start.stage ? start.step : 0,
                                       momentsFrom: si == start.stage ? start.momentsFrom : nil, globalStep: &globalStep, tokens: &tokens)
            if outcome == .stopped { return .stopped }
        }
        if isRoot {
            // The charts of the whole run, next to its metrics.
            _ = try? Plot.run(metricsPath: (run.path as NSString).appendingPathComponent("metrics.jsonl"),
                              outDir: (run.path as NSString).appendingPathComponent("plots"))
        }
        return .finished
    }

    /// Where a run starts: a checkpoint's stage, step and counters, or the beginning.
    struct StartPoint {
        var stage = 0, step = 0, globalStep = 0, tokens = 0
        /// Where the optimizer state comes from on resume: each rank reads its own moments there.
        var momentsFrom: String?
    }

    /// Rotary tables long enough for training rows and for generation (a chat template's
    /// prompt plus the completion, in evaluation and GRPO).
    func rotaryPositions() -> Int {
        recipe.stages.indices.map { i -> Int in
            let s = recipe.stages[i]
            if case .pretrain = s.kind { return s.seqLen }
            return Swift.max(s.seqLen, Self.tokenizerSource(recipe: recipe, paths: paths, stage: i) == nil ? 128 : 512)
        }.max()! + 1
    }

    /// The model the first stage trains: the checkpoint resumed, else the weights of the
    /// Hugging Face directory `model:` names, else a fresh initialisation from the seed.
    func startingModel(_ config: DeepSeekConfig, resume: String?, positions: Int, holds: @escaping (String) -> Bool,
                       start: inout StartPoint) throws -> DeepSeekForCausalLM {
        if let resume { return try resumedModel(resume, config: config, positions: positions, holds: holds, start: &start) }
        let fm = FileManager.default, dir = hfDirectory(recipe.model.source)
        func has(_ file: String) -> Bool { dir.map { fm.fileExists(atPath: ($0 as NSString).appendingPathComponent(file)) } ?? false }
        if let dir, has("model.safetensors") || has("model.safetensors.index.json") {
            // `model:` names a Hugging Face directory with weights: training starts from them.
            let model = asConfigured(try HFDirectory.load(dir, positions: positions, holds: holds), config, positions: positions, holds: holds)
            tokenizerFiles = try HFDirectory.tokenizerFiles(dir)
            tokenizerSource = tokenizerSource ?? (tokenizerFiles.contains { $0.0 == "tokenizer.json" } ? dir : nil)
            log("model weights from \(dir)")
            return model
        }
        let model = DeepSeekForCausalLM(config, seed: recipe.seed, positions: positions, holds: holds)
        if let dir, has("tokenizer.json") {
            tokenizerFiles = try HFDirectory.tokenizerFiles(dir)
            tokenizerSource = tokenizerSource ?? dir
        }
        return model
    }

    /// A checkpoint's model, where it stopped, and its tokenizer; metrics past it are dropped.
    func resumedModel(_ resume: String, config: DeepSeekConfig, positions: Int, holds: @escaping (String) -> Bool,
                      start: inout StartPoint) throws -> DeepSeekForCausalLM {
        let (model, state) = try CheckpointStore.load(resume, positions: positions, holds: holds)
        guard model.config == config else {
            throw CheckpointError(resume, "holds a different model than the recipe's (its config.json differs)")
        }
        start = StartPoint(stage: state.stageIndex, step: state.step, globalStep: state.globalStep, tokens: state.tokens, momentsFrom: resume)
        let named = model.namedParameters()
        // Checked now (metadata only), read per rank when the stage's optimizer exists.
        _ = try CheckpointStore.optimizerStep(resume, parameters: named.map { ($0.0, $0.1.shape) })
        try runDirectory?.truncateMetrics(afterGlobalStep: start.globalStep)
        log("resumed from \(resume): stage \(recipe.stages[start.stage].name), step \(start.step)")
        tokenizerFiles = try CheckpointStore.tokenizerFiles(resume)
        return model
    }

    /// The recipe's own `tokenizer:` is the one the checkpoints carry.
    func takeRecipeTokenizer() throws {
        guard let t = recipe.tokenizer.flatMap({ _ in tokenizerSource }) else { return }
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: t, isDirectory: &isDir) {
            tokenizerFiles = isDir.boolValue ? try HFDirectory.tokenizerFiles(t)
                : [("tokenizer.json", FileManager.default.contents(atPath: t) ?? Data())]
        }
    }

    /// A stage's `init:`: a checkpoint, or a Hugging Face model directory (its weights, and its
    /// tokenizer for the stages); its tokenizer files go into the checkpoints from then on.
    func initialModel(_ initPath: String, config: DeepSeekConfig, positions: Int,
                      holds: @escaping (String) -> Bool) throws -> DeepSeekForCausalLM {
        let m: DeepSeekForCausalLM
        if let dir = hfDirectory(initPath) {
            m = try HFDirectory.load(dir, positions: positions, holds: holds)
            let files = try HFDirectory.tokenizerFiles(dir)
            if !files.isEmpty { tokenizerFiles = files }
            if tokenizerSource == nil || recipe.tokenizer == nil, files.contains(where: { $0.0 == "tokenizer.json" }) { tokenizerSource = dir }
        } else {
            let path = paths.resolve(initPath)
            m = try CheckpointStore.load(path, positions: positions, holds: holds).0
            let files = try CheckpointStore.tokenizerFiles(path)
            if !files.isEmpty { tokenizerFiles = files }
        }
        let model = asConfigured(m, config, positions: positions, holds: holds)
        guard model.config == config else { throw CheckpointError(initPath, "holds a different model than the recipe's (its config.json differs)") }
        return model
    }

    /// A language model turned into the reward model a reward recipe trains (a new `score`
    /// head, as transformers' AutoModelForSequenceClassification does); any other model as it is.
    func asConfigured(_ m: DeepSeekForCausalLM, _ config: DeepSeekConfig, positions: Int,
                      holds: @escaping (String) -> Bool) -> DeepSeekForCausalLM {
        guard config.isRewardModel, !m.config.isRewardModel else { return m }
        log("reward model: the language model's body with a new score head (lm_head dropped)")
        return m.rewardModel(seed: recipe.seed, positions: positions, holds: holds)
    }

    /// `spec` (see `RecipePaths`) as a directory path, when it is one.
    func hfDirectory(_ spec: String) -> String? { paths.directory(spec) }

    /// How a post-training stage turns conversations into tokens: the recipe's `tokenizer:`,
    /// else the model directory's tokenizer, else the built-in byte format. A tokenizer needs a
    /// chat template and must fit the model's vocabulary.
    func chatFormat(vocab: Int, stage: Int) throws -> ChatFormat {
        try Self.chatFormat(recipe: recipe, paths: paths, stage: stage, vocab: vocab)
    }

    /// The tokenizer stage `stage` renders with: the recipe's `tokenizer:`, else the last model
    /// directory (`model:`, then the stages' `init:`) that holds a tokenizer.json.
    static func tokenizerSource(recipe: Recipe, paths: RecipePaths, stage: Int) -> String? {
        let resolve = paths.resolve
        if let t = recipe.tokenizer { return resolve(t) }
        let candidates = [recipe.model.source] + recipe.stages.prefix(stage + 1).compactMap(\.initFrom)
        return candidates.map(resolve).last { FileManager.default.fileExists(atPath: ($0 as NSString).appendingPathComponent("tokenizer.json")) }
    }

    /// What a stage will read, checked before anything is written (`deeptrain train` calls it
    /// for every stage, so bad data or a tokenizer that does not fit leaves no run directory).
    package static func checkData(recipe: Recipe, recipePath: String, stage i: Int, vocab: Int) throws {
        let paths = RecipePaths(recipePath: recipePath)
        let s = recipe.stages[i]
        try checkRewardModels(recipe: recipe, paths: paths, recipePath: recipePath, stage: i, vocab: vocab)
        guard let form = s.kind.postTrainingForm, let heldOut = s.kind.heldOut else {
            _ = try DataSource.open(paths.resolve(s.data), vocab: vocab)
            return
        }
        let format = try chatFormat(recipe: recipe, paths: paths, stage: i, vocab: vocab)
        if !format.isTemplate && vocab < 256 {
            throw RecipeError(file: recipePath, line: nil, column: nil, path: "stages[\(i)].data",
                              message: "\(s.kind.name.rawValue) stages use the byte-level chat template (docs/grpo.md) and need "
                                + "vocab_size ≥ 256, or a tokenizer with a chat template")
        }
        _ = try PostTrainingData.open(paths.resolve(s.data), form: form, format: format, evalData: heldOut.evalData.map(paths.resolve),
                                      evalFraction: heldOut.evalFraction)
    }

    /// Each `kind: model` reward of a GRPO stage names a reward model of the policy's vocabulary
    /// (its config only is read here).
    static func checkRewardModels(recipe: Recipe, paths: RecipePaths, recipePath: String, stage i: Int, vocab: Int) throws {
        for (k, spec) in (recipe.stages[i].grpo?.rewards ?? []).enumerated() {
            guard case .model(let checkpoint) = spec.kind else { continue }
            let key = "stages[\(i)].grpo.rewards[\(k)].checkpoint", path = paths.resolve(checkpoint)
            func fail(_ message: String) -> RecipeError {
                RecipeError(file: recipePath, line: nil, column: nil, path: key, message: message)
            }
            let config: DeepSeekConfig
            do {
                config = try paths.directory(checkpoint).map { try DeepSeekConfig.load(($0 as NSString).appendingPathComponent("config.json")) }
                    ?? CheckpointStore.readConfig(path)
            } catch {
                throw fail("\(error)")  // names the file
            }
            guard config.isRewardModel else {
                throw fail("\(path) holds a language model, not a reward model (train one with a reward stage, docs/reward.md)")
            }
            guard config.vocabSize == vocab else {
                throw fail("\(path) is a reward model of vocab_size \(config.vocabSize); the policy's is \(vocab): it must read the policy's tokens")
            }
        }
    }

    static func chatFormat(recipe: Recipe, paths: RecipePaths, stage: Int, vocab: Int) throws -> ChatFormat {
        guard let source = tokenizerSource(recipe: recipe, paths: paths, stage: stage) else { return .bytes }
        let t = try ChatTokenizer(path: source)
        guard t.template != nil else {
            throw TokenizerError(source: source, message: "has no chat template (chat_template.jinja or tokenizer_config.json's chat_template): post-training needs one to render conversations")
        }
        guard t.tokenizer.vocabularySize <= vocab else {
            throw TokenizerError(source: source, message: "has \(t.tokenizer.vocabularySize) token ids, more than the model's vocab_size \(vocab): the model cannot embed them")
        }
        guard t.eosId != nil else {
            throw TokenizerError(source: source, message: "names no eos_token in tokenizer_config.json (or it is not in the vocabulary): completions would never stop")
        }
        return .template(t)
    }

    /// Where the groups run: a group within one node talks over shared memory, one across
    /// nodes over the network (docs/multinode.md). The most nodes any group of a kind spans.
    func logPlacement() throws {
        guard grid.world.size > 1 else { return }
        var spans = [Double(grid.dpNodes), Double(grid.epNodes), Double(grid.edpNodes), Double(try grid.world.nodeCount())]
        try grid.world.allreduceMax(&spans)
        let n = spans.map { Int($0) }, l = grid.layout
        let timeout = recipe.parallel.timeout.map { "a rank unheard for \(LivenessWatch.seconds($0)) s ends the job" } ?? "no liveness timeout (parallel.timeout: off)"
        log("layout dp \(l.dp) × ep \(l.ep) × pp \(l.pp) on \(grid.world.size) ranks and \(n[3]) node\(n[3] == 1 ? "" : "s"): "
            + "dp groups span \(n[0]), ep groups \(n[1]), expert replicas \(n[2]); \(timeout)")
    }

    /// Where routing's limit lands when an ep group spans nodes: each router group's nodes, and
    /// whether `topk_group` bounds the nodes a token reaches (one node a group) or only groups.
    func logRoutingNodes(_ c: DeepSeekConfig) {
        guard grid.epNodes > 1 else { return }
        let nodes = ProcessGrid.groupNodes(experts: c.nRoutedExperts, groups: c.nGroup, nodeOf: grid.epNodeOf)
        let map = nodes.enumerated().map { "\($0.offset)→\($0.element.map(String.init).joined(separator: "+"))" }.joined(separator: " ")
        let bound = c.topkMethod == .greedy ? "greedy routing: a token may reach every node of its ep group"
            : nodes.allSatisfy({ $0.count == 1 }) ? "a token's experts are on at most topk_group = \(c.topkGroup) nodes"
            : "groups span nodes: topk_group = \(c.topkGroup) bounds groups, not nodes (docs/multinode.md)"
        log("router groups on nodes (rank 0's ep group): \(map); \(bound)")
    }

    func log(_ s: String) {
        guard isRoot else { return }
        run.logLine(s)
        progress(s)
    }

    func saveCheckpoint(model: DeepSeekForCausalLM, trainer: GridTrainer, stage: Recipe.Stage, index: Int, step: Int,
                        globalStep: Int, tokens: Int) throws {
        // A finished stage is recorded as the next stage's step 0, so resuming starts there.
        let done = step == stage.steps && index + 1 < recipe.stages.count
        let file = try grid.world.broadcast(isRoot ? (run.checkpoints as NSString).appendingPathComponent(String(format: "step-%08d.h5", globalStep)) : "",
                                            root: 0)
        let state = CheckpointStore.State(stage: stage.name, step: done ? 0 : step, tokens: tokens, recipe: recipe.resolvedYAML,
                                          stageIndex: done ? index + 1 : index, globalStep: globalStep, seed: Int(recipe.seed),
                                          routerBiases: model.routerBiasValues)
        try ShardedCheckpoint.save(file, world: grid.world, trainer: trainer, state: state, moments: !done, tokenizerFiles: tokenizerFiles)
        guard isRoot else { return }
        try run.publish(file, keep: recipe.checkpoint.keep)
        run.logLine("checkpoint \(file)")
    }
}

extension RecipeTrainer {
    /// The closing table: each stage with its steps, time, held-out loss and exact match
    /// before → after.
    package func summaryTable() -> String {
        func f(_ x: Double?, _ fmt: String) -> String { x.map { String(format: fmt, $0) } ?? "-" }
        let samples = summaries.map(\.samples).max() ?? 0
        var lines = ["stage        kind      steps    time   held-out loss      exact match        mean reward" + (samples > 0 ? "   (\(samples) held-out problems)" : "")]
        for s in summaries {
            lines.append(s.name.padding(toLength: 13, withPad: " ", startingAt: 0) + s.kind.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)
                         + String(format: "%7d %6.0fs   ", s.steps, s.seconds)
                         + "\(f(s.lossBefore, "%.3f")) → \(f(s.lossAfter, "%.3f"))".padding(toLength: 19, withPad: " ", startingAt: 0)
                         + "\(f(s.accuracyBefore.map { 100 * $0 }, "%.1f%%")) → \(f(s.accuracyAfter.map { 100 * $0 }, "%.1f%%"))".padding(toLength: 19, withPad: " ", startingAt: 0)
                         + "\(f(s.rewardBefore, "%.3f")) → \(f(s.rewardAfter, "%.3f"))")
        }
        lines.append("run directory: \(run.path) (metrics.jsonl, train.log, checkpoints/); plots: \((run.path as NSString).appendingPathComponent("plots"))/*.svg")
        return lines.joined(separator: "\n")
    }
}
