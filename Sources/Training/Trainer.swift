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
/// (`ParallelTrainer`), clipping, AdamW at the scheduled rate; metrics, evaluation and
/// checkpoints as the recipe says, written by world rank 0. Everything random is keyed by
/// (seed, step, index), never by rank, so a resumed run repeats the uninterrupted one bit for
/// bit, at any layout.
public final class Trainer {
    public let recipe: Recipe
    public let grid: ProcessGrid
    /// The run directory, on world rank 0 only (other ranks write nothing).
    public let runDirectory: RunDirectory?
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

    public enum Outcome: Equatable { case finished, stopped }

    /// One row of the closing table.
    public struct StageSummary: Sendable {
        public var name: String
        public var kind: Recipe.StageKind.Name
        public var steps: Int
        public var seconds: Double
        public var lossBefore: Double?
        public var lossAfter: Double?
        public var accuracyBefore: Double?
        public var accuracyAfter: Double?
        public var rewardBefore: Double?
        public var rewardAfter: Double?
        public var samples: Int
    }
    public private(set) var summaries: [StageSummary] = []

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public let exitCode: Int32
    }

    public init(recipe: Recipe, recipePath: String, runDir: String, fresh: Bool, grid: ProcessGrid? = nil,
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
    public func train(resume: String?) throws -> Outcome {
        Trainer.installSignalHandlers()
        let config = try recipe.model.config(relativeTo: paths.directory)
        var startStage = 0, startStep = 0, globalStep = 0, tokens = 0
        var model: DeepSeekV2ForCausalLM
        // Where the optimizer state comes from on resume: each rank reads its own moments there.
        var momentsFrom: String? = nil
        // Rotary tables long enough for training rows and for generation (a chat template's
        // prompt plus the completion, in evaluation and GRPO).
        let positions = recipe.stages.indices.map { i -> Int in
            let s = recipe.stages[i]
            if case .pretrain = s.kind { return s.seqLen }
            return Swift.max(s.seqLen, Self.tokenizerSource(recipe: recipe, paths: paths, stage: i) == nil ? 128 : 512)
        }.max()! + 1
        // A rank builds, initialises and loads only its part: its stage, its ep block's experts.
        let holds = grid.holds(experts: config.nRoutedExperts)
        if let resume {
            let (m, state) = try CheckpointStore.load(resume, positions: positions, holds: holds)
            guard m.config == config else {
                throw CheckpointError(resume, "holds a different model than the recipe's (its config.json differs)")
            }
            model = m
            startStage = state.stageIndex
            startStep = state.step
            globalStep = state.globalStep
            tokens = state.tokens
            let named = model.namedParameters()
            // Checked now (metadata only), read per rank when the stage's optimizer exists.
            _ = try CheckpointStore.optimizerStep(resume, parameters: named.map { ($0.0, $0.1.shape) })
            momentsFrom = resume
            try runDirectory?.truncateMetrics(afterGlobalStep: globalStep)
            log("resumed from \(resume): stage \(recipe.stages[startStage].name), step \(startStep)")
            tokenizerFiles = try CheckpointStore.tokenizerFiles(resume)
        } else if let dir = hfDirectory(recipe.model.source), FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent("model.safetensors")) || FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent("model.safetensors.index.json")) {
            // `model:` names a Hugging Face directory with weights: training starts from them.
            model = try HFDirectory.load(dir, positions: positions, holds: holds)
            tokenizerFiles = try HFDirectory.tokenizerFiles(dir)
            tokenizerSource = tokenizerSource ?? (tokenizerFiles.contains { $0.0 == "tokenizer.json" } ? dir : nil)
            log("model weights from \(dir)")
        } else {
            model = DeepSeekV2ForCausalLM(config, seed: recipe.seed, positions: positions, holds: holds)
            if let dir = hfDirectory(recipe.model.source), FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent("tokenizer.json")) {
                tokenizerFiles = try HFDirectory.tokenizerFiles(dir)
                tokenizerSource = tokenizerSource ?? dir
            }
        }
        if let t = recipe.tokenizer.flatMap({ _ in tokenizerSource }) {
            // The recipe's own tokenizer is the one the checkpoints carry.
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: t, isDirectory: &isDir) {
                tokenizerFiles = isDir.boolValue ? try HFDirectory.tokenizerFiles(t) : [("tokenizer.json", FileManager.default.contents(atPath: t) ?? Data())]
            }
        }
        for si in startStage..<recipe.stages.count {
            let stage = recipe.stages[si]
            if si > startStage || resume == nil, let initPath = stage.initFrom {
                let path = paths.resolve(initPath)
                let m: DeepSeekV2ForCausalLM
                if let dir = hfDirectory(initPath) {
                    // A Hugging Face model directory: its weights, and its tokenizer for the stages.
                    m = try HFDirectory.load(dir, positions: positions, holds: holds)
                    let files = try HFDirectory.tokenizerFiles(dir)
                    if !files.isEmpty { tokenizerFiles = files }
                    if tokenizerSource == nil || recipe.tokenizer == nil, files.contains(where: { $0.0 == "tokenizer.json" }) { tokenizerSource = dir }
                } else {
                    m = try CheckpointStore.load(path, positions: positions, holds: holds).0
                    let files = try CheckpointStore.tokenizerFiles(path)
                    if !files.isEmpty { tokenizerFiles = files }
                }
                guard m.config == config else { throw CheckpointError(initPath, "holds a different model than the recipe's (its config.json differs)") }
                model = m
            }
            let outcome = try runStage(stage, index: si, model: model, from: si == startStage ? startStep : 0,
                                       momentsFrom: si == startStage ? momentsFrom : nil, globalStep: &globalStep, tokens: &tokens)
            if outcome == .stopped { return .stopped }
        }
        if isRoot {
            // The charts of the whole run, next to its metrics.
            _ = try? Plot.run(metricsPath: (run.path as NSString).appendingPathComponent("metrics.jsonl"),
                              outDir: (run.path as NSString).appendingPathComponent("plots"))
        }
        return .finished
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
    public static func checkData(recipe: Recipe, recipePath: String, stage i: Int, vocab: Int) throws {
        let paths = RecipePaths(recipePath: recipePath)
        let s = recipe.stages[i]
        guard let form = s.kind.postTrainingForm, let heldOut = s.kind.heldOut else {
            _ = try DataSource.open(paths.resolve(s.data), vocab: vocab)
            return
        }
        let format = try chatFormat(recipe: recipe, paths: paths, stage: i, vocab: vocab)
        if !format.isTemplate && vocab < 256 {
            throw RecipeError(file: recipePath, line: nil, column: nil, path: "stages[\(i)].data",
                              message: "\(s.kind.name.rawValue) stages use the byte-level chat template (docs/grpo.md) and need vocab_size ≥ 256, or a tokenizer with a chat template")
        }
        _ = try PostTrainingData.open(paths.resolve(s.data), form: form, format: format, evalData: heldOut.evalData.map(paths.resolve),
                                      evalFraction: heldOut.evalFraction)
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

    func log(_ s: String) {
        guard isRoot else { return }
        run.logLine(s)
        progress(s)
    }

    func runStage(_ stage: Recipe.Stage, index si: Int, model: DeepSeekV2ForCausalLM, from startStep: Int,
                  momentsFrom: String?, globalStep: inout Int, tokens: inout Int) throws -> Outcome {
        let micro = recipe.parallel.microbatches
        guard stage.batchSize % micro == 0 || stage.grpo != nil else {
            throw RecipeError(file: "recipe", line: nil, column: nil, path: "stages[\(si)].batch_size",
                              message: "is \(stage.batchSize), not divisible by parallel.microbatches = \(micro)")
        }
        var stage = stage
        let resolve = paths.resolve
        let pretrainData = stage.kind.postTrainingForm == nil ? try DataSource.open(resolve(stage.data), vocab: model.config.vocabSize) : nil
        let postData = try stage.kind.postTrainingForm.map {
            try PostTrainingData.open(resolve(stage.data), form: $0, format: try chatFormat(vocab: model.config.vocabSize, stage: si),
                                      evalData: stage.kind.heldOut!.evalData.map(resolve), evalFraction: stage.kind.heldOut!.evalFraction)
        }
        if let postData, postData.format.isTemplate {
            log("stage \(stage.name): conversations rendered with the chat template of \(Self.tokenizerSource(recipe: recipe, paths: paths, stage: si)!)")
        }
        if let postData, let sft = stage.sft, let n = postData.count, !sft.packing {
            // Cut, never dropped: say up front how many conversations do not fit a row.
            let long = (0..<n).filter { postData.renderedConversation($0, seed: recipe.seed).tokens.count > stage.seqLen + 1 }.count
            if long > 0 { log("stage \(stage.name): \(long) of \(n) conversations are longer than seq_len + 1 = \(stage.seqLen + 1) tokens and are cut (truncated_conversations_local counts them per step)") }
        }
        if let postData, !postData.hasHeldOut, stage.evalEvery > 0 {
            log("stage \(stage.name): no eval_data or eval_fraction, so no held-out evaluation")
            stage.evalEvery = 0
        }
        let packer = stage.sft?.packing == true ? PostTrainingData.Packer(data: postData!, seed: recipe.seed, length: stage.seqLen) : nil
        if let epochs = stage.sft?.epochs, let n = postData?.count {
            let rows = packer?.rows(covering: epochs * n) ?? epochs * n
            stage.steps = (rows + stage.batchSize - 1) / stage.batchSize
        }
        let trainer = ParallelTrainer(model: model, grid: grid, adam: stage.adam, clip: Float(stage.clip),
                                      alphas: .init(expert: stage.alphas.expert ?? model.config.auxLossAlpha,
                                                    device: stage.alphas.device, communication: stage.alphas.communication),
                                      dropping: stage.capacityFactor.map { TokenDropping(capacityFactor: $0, neverDropFraction: stage.neverDropFraction) },
                                      seed: recipe.seed)
        func stageError(_ key: String, _ message: String) -> RecipeError {
            RecipeError(file: "recipe", line: nil, column: nil, path: "stages[\(si)].\(key)", message: message)
        }
        if stage.biasUpdateSpeed > 0 {
            guard model.config.topkMethod == .noauxTC else {
                throw stageError("moe.bias_update_speed", "is \(stage.biasUpdateSpeed), but the model's router has no bias (topk_method is \"\(model.config.topkMethod.rawValue)\"; aux-loss-free balancing needs V3's \"noaux_tc\")")
            }
            trainer.biasUpdateSpeed = Float(stage.biasUpdateSpeed)
        }
        if stage.mtpDepth > 0 {
            let have = model.config.numNextnPredictLayers
            guard stage.mtpDepth <= have else {
                throw stageError("mtp.depth", "is \(stage.mtpDepth), but the model has \(have) MTP depth\(have == 1 ? "" : "s") (num_nextn_predict_layers)")
            }
            guard grid.layout.pp == 1 else {
                throw stageError("mtp.depth", "is \(stage.mtpDepth) with parallel.pp = \(grid.layout.pp): MTP reads the embedding, which only the first pipeline stage holds (use pp: 1)")
            }
            guard stage.sft?.packing != true, stage.grpo == nil else {
                throw stageError("mtp.depth", "is \(stage.mtpDepth) in a \(stage.sft?.packing == true ? "packed SFT" : "GRPO") stage; MTP trains pretraining and unpacked SFT stages")
            }
            trainer.mtpDepth = stage.mtpDepth
            trainer.mtpWeight = Float(stage.mtpWeight)
        }
        if let momentsFrom {
            try ShardedCheckpoint.loadMoments(momentsFrom, trainer: trainer)
        }
        let rewards = try rewardFunctions(stage)
        // Evaluation runs on the sharded model, every rank taking part (Evaluation.swift).
        let inference = ShardedInference(trainer)
        let evaluate: () throws -> Evaluation = { [self] in
            if let pretrainData { return try self.evaluate(inference, data: pretrainData, stage: stage) }
            return try self.evaluateChat(inference, data: postData!, stage: stage, rewards: rewards)
        }
        let grpo = stage.grpo != nil ? try GRPORunner(trainer: self, engine: trainer, stage: stage, data: postData!, rewards: rewards) : nil
        let schedule = stage.lrSchedule()
        let flopsPerToken = ModelPlan(model.config, sequenceLength: stage.seqLen).flops_per_token
        // MFU's denominator: ranks × the sgemm peak measured here at a rank's thread count and
        // with the kernel in use (SgemmPeak: cached per machine, `deeptrain env --measure`).
        let peak = try SgemmPeak.job(world: grid.world, threads: Threads.count) * 1e9
        let stageStart = now()
        var nanRun = 0, nanTotal = 0
        var summary = StageSummary(name: stage.name, kind: stage.kind.name, steps: stage.steps, seconds: 0, samples: 0)
        if stage.evalEvery > 0 && startStep == 0 {
            let e = try evaluate()
            if isRoot {
                (summary.lossBefore, summary.accuracyBefore, summary.rewardBefore, summary.samples) = (e.loss, e.accuracy, e.reward, e.samples)
                log("before training: " + e.line)
            }
        }
        if let g = stage.grpo {
            log("stage \(si) \(stage.name): grpo on \(stage.data), \(stage.steps) steps; \(g.promptsPerStep) prompts × \(g.numGenerations) completions "
                + "of ≤ \(g.maxCompletionLength) tokens every \(g.numIterations) step(s), loss \(g.lossType.rawValue), β \(g.beta), from step \(startStep)")
        } else {
            log("stage \(si) \(stage.name): \(stage.kind.name.rawValue) on \(stage.data), \(stage.steps) steps of \(stage.batchSize)×\(stage.seqLen) tokens, from step \(startStep)")
        }
        var step = startStep
        while step < stage.steps {
            let lr = Float(schedule.lr(at: step))
            let t0 = now()
            let rowsPerMicro = stage.batchSize / micro
            if let f = Trainer.injectedFault, f.rank == grid.world.rank, f.step == globalStep + 1 {
                throw Failure(description: "injected failure at global step \(f.step) (DEEPTRAIN_FAULT_STEP)", exitCode: 3)
            }
            let r: ParallelTrainer.StepResult
            var extra: [String: Any] = [:]
            var stepTokens = stage.batchSize * stage.seqLen
            if let grpo {
                do {
                    (r, extra, stepTokens) = try grpo.step(step: step, globalStep: globalStep, lr: lr)
                } catch let e as RewardStop {
                    // The weights are those of the last finished step: keep them, then stop.
                    try saveCheckpoint(model: model, trainer: trainer, stage: stage, index: si, step: step, globalStep: globalStep, tokens: tokens)
                    throw Failure(description: "stage \(stage.name) stopped before step \(step + 1): \(e.message); a checkpoint of step \(step) "
                                  + "is written: fix the reward and continue with --resume auto", exitCode: 3)
                }
            } else if let pretrainData {
                let first = globalStep * stage.batchSize
                r = try trainer.step(batch: { m in
                    let f = first + m * rowsPerMicro
                    return ParallelTrainer.MicroBatch(rows: pretrainData.rows(first: f, count: rowsPerMicro, length: stage.seqLen + 1, seed: self.recipe.seed),
                                                      rows: rowsPerMicro, length: stage.seqLen, firstSequence: f)
                }, rows: rowsPerMicro, length: stage.seqLen, lr: lr, step: globalStep)
            } else {
                // SFT: conversation g of the stage's stream is sequence g of its steps.
                let first = step * stage.batchSize
                nonisolated(unsafe) var cut = 0
                // With a chat template, the step's loss is the mean over all its trained tokens
                // (TRL's): every rank counts the whole step's, so each micro-batch knows its share.
                var stepTrained = 0
                let weighted = postData!.format.isTemplate && packer == nil
                if weighted {
                    for g in first..<(first + stage.batchSize) {
                        stepTrained += PostTrainingData.sftRow(postData!.renderedConversation(g, seed: recipe.seed), length: stage.seqLen,
                                                               pad: postData!.format.pad).targets.filter { $0 != ignoreIndex }.count
                    }
                }
                r = try trainer.step(batch: { m in
                    var inputs: [Int] = [], targets: [Int] = [], positions: [Int] = [], segments: [Int] = []
                    for row in 0..<rowsPerMicro {
                        let g = first + m * rowsPerMicro + row
                        if let packer {
                            let x = packer.row(g)
                            inputs += x.inputs
                            targets += x.targets
                            positions += x.positions
                            segments += x.segments
                            continue
                        }
                        let x = PostTrainingData.sftRow(postData!.renderedConversation(g, seed: self.recipe.seed), length: stage.seqLen,
                                                        pad: postData!.format.pad)
                        inputs += x.inputs
                        targets += x.targets
                        if x.cut { cut += 1 }
                    }
                    let trainedHere = targets.filter { $0 != ignoreIndex }.count
                    return ParallelTrainer.MicroBatch(inputs: inputs, targets: targets, firstSequence: globalStep * stage.batchSize + m * rowsPerMicro,
                                                      packing: packer == nil ? nil : (positions, segments),
                                                      weight: weighted ? Double(trainedHere) / Double(Swift.max(stepTrained, 1)) : nil)
                }, rows: rowsPerMicro, length: stage.seqLen, lr: lr, step: globalStep)
                if let n = postData!.count, packer == nil { extra["epoch"] = Double(step * stage.batchSize) / Double(n) }
                if let packer { extra["conversations"] = packer.range((step + 1) * stage.batchSize - 1).upperBound }
                extra["truncated_conversations_local"] = cut
            }
            let (ce, aux, gradNorm) = (r.ce, r.aux, r.gradNorm)
            // Measured, not estimated: each rank's peak resident memory so far (VmHWM).
            let rss = try grid.world.allgather([ProcessStats.peakRSSMiB])
            if r.updated {
                nanRun = 0
            } else {
                nanRun += 1
                nanTotal += 1
                log("step \(step + 1): non-finite loss or gradient, step skipped (\(nanRun) in a row)")
            }
            step += 1
            globalStep += 1
            tokens += stepTokens
            let dt = now() - t0
            let tps = Double(stepTokens) / dt
            let elapsed = now() - stageStart
            var m: [String: Any] = [
                "stage": stage.name, "step": step, "global_step": globalStep, "tokens": tokens, "lr": Double(lr),
                "loss": r.loss, "ce": ce, "grad_norm": Double(gradNorm), "tokens_per_s": tps,
                "mfu": tps * flopsPerToken / peak, "elapsed_s": elapsed, "aux_expert": aux.0, "aux_device": aux.1,
                "aux_comm": aux.2, "drop_fraction": r.dropFraction,
                "expert_load": r.expertLoad, "nan_skipped": nanTotal, "ranks": grid.world.size,
                "rank_load": r.rankLoad, "peak_rss_mb": rss.max() ?? 0, "rank_peak_rss_mb": rss, "forward_s": r.forward, "backward_s": r.backward, "optimizer_s": r.optimizer,
            ]
            for (k, v) in extra { m[k] = v }
            if trainer.mtpDepth > 0 { m["mtp_loss"] = r.mtp }
            if !r.loadImbalance.isEmpty {
                m["load_imbalance"] = r.loadImbalance.reduce(0, +) / Double(r.loadImbalance.count)
                m["load_imbalance_layers"] = r.loadImbalance
            }
            if let cap = r.rankCapacity {
                m["rank_capacity"] = cap
                m["never_dropped_routed"] = r.protectedRouted
                m["never_dropped_received"] = r.protectedReceived
            }
            if stage.evalEvery > 0 && (step % stage.evalEvery == 0 || step == stage.steps) {
                let e = try evaluate()
                if isRoot {
                    m["eval_loss"] = e.loss
                    if let acc = e.accuracy { m["eval_exact_match"] = acc; m["eval_samples"] = e.samples }
                    if let rw = e.reward { m["eval_reward"] = rw }
                    (summary.lossAfter, summary.accuracyAfter, summary.rewardAfter, summary.samples) = (e.loss, e.accuracy, e.reward, e.samples)
                    log("step \(step)/\(stage.steps)  " + e.line)
                }
            }
            // Measured after the step's evaluation too: other ranks' weights this rank touched (mincore).
            m["rank_foreign_weights_mb"] = try grid.world.allgather([Double(trainer.foreignResidentBytes()) / 1_048_576])
            runDirectory?.writeMetrics(m)
            if nanRun >= stage.maxNaNSteps {
                throw Failure(description: "stage \(stage.name): \(nanRun) steps in a row with a non-finite loss or gradient (max_nan_steps = \(stage.maxNaNSteps)); lower optimizer.lr or check the data", exitCode: 3)
            }
            if step % stage.logEvery == 0 || step == stage.steps {
                let eta = elapsed / Double(step - startStep) * Double(stage.steps - step)
                let line = grpo == nil
                    ? String(format: "step %5d/%d  loss %.4f  ce %.4f", step, stage.steps, r.loss, ce)
                        + (trainer.mtpDepth > 0 ? String(format: "  mtp %.4f", r.mtp) : "")
                        + String(format: "  aux %.2e  grad_norm %.3f  lr %.2e  %.0f tok/s  eta %.0fs", aux.0 + aux.1 + aux.2, gradNorm, lr, tps, eta)
                    : String(format: "step %5d/%d  reward %.3f ± %.3f  kl %.4f  clip %.3f  len %.1f  zero-std groups %.2f  grad_norm %.3f  eta %.0fs",
                             step, stage.steps, m["reward_mean"] as! Double, m["reward_std"] as! Double, m["kl"] as! Double,
                             m["clip_fraction"] as! Double, m["completion_len_mean"] as! Double, m["frac_zero_std_groups"] as! Double,
                             gradNorm, eta)
                runDirectory?.logLine(line)
                if !isRoot {
                } else if isTerminal {
                    let width = 30, done = width * step / stage.steps
                    progress("\u{1B}[2K\r[" + String(repeating: "=", count: done) + String(repeating: " ", count: width - done) + "] " + line)
                } else {
                    progress(line)
                }
            }
            let last = step == stage.steps
            // Every rank must stop after the same step (mpirun forwards a signal to each rank at its own moment).
            var stop = [Double(stopRequested)]
            try grid.world.allreduceMax(&stop)
            let stopNow = stop[0] != 0
            if stopNow || last || (recipe.checkpoint.every > 0 && step % recipe.checkpoint.every == 0) {
                try saveCheckpoint(model: model, trainer: trainer, stage: stage, index: si, step: step, globalStep: globalStep, tokens: tokens)
            }
            if stopNow {
                log("stopped by signal after step \(step); checkpoint written")
                return .stopped
            }
        }
        summary.seconds = now() - stageStart
        summaries.append(summary)
        return .finished
    }

    func saveCheckpoint(model: DeepSeekV2ForCausalLM, trainer: ParallelTrainer, stage: Recipe.Stage, index: Int, step: Int,
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

extension Trainer {
    /// The closing table: each stage with its steps, time, held-out loss and exact match
    /// before → after.
    public func summaryTable() -> String {
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
