import Foundation
import Autograd
import Optim
import DeepSeek
import Data
import Collectives
import Parallel

/// A stage of a run: its data opened, its engine set up, and its kind's runner driven through
/// the loop every kind shares (docs/design.md §3.1).
extension RecipeTrainer {
    func runStage(_ stage: Recipe.Stage, index si: Int, model: DeepSeekForCausalLM, from startStep: Int,
                  momentsFrom: String?, globalStep: inout Int, tokens: inout Int) throws -> Outcome {
        let micro = recipe.parallel.microbatches
        guard stage.batchSize % micro == 0 || stage.grpo != nil else {
            throw RecipeError(file: "recipe", line: nil, column: nil, path: "stages[\(si)].batch_size",
                              message: "is \(stage.batchSize), not divisible by parallel.microbatches = \(micro)")
        }
        switch stage.kind {
        case .pretrain:
            let data = try DataSource.open(paths.resolve(stage.data), vocab: model.config.vocabSize)
            let context = try stageContext(stage, index: si, model: model, momentsFrom: momentsFrom)
            return try drive(PretrainRunner(context, stage: stage, data: data), context, from: startStep, globalStep: &globalStep, tokens: &tokens)
        case .sft(let sft):
            var stage = stage
            let data = try openPostTrainingData(&stage, index: si, form: .conversations, vocab: model.config.vocabSize)
            let packer = sft.packing ? PostTrainingData.Packer(data: data, seed: recipe.seed, length: stage.seqLen) : nil
            if let epochs = sft.epochs, let n = data.count {
                let rows = packer?.rows(covering: epochs * n) ?? epochs * n
                stage.steps = (rows + stage.batchSize - 1) / stage.batchSize
            }
            let context = try stageContext(stage, index: si, model: model, momentsFrom: momentsFrom)
            let runner = SFTRunner(context, stage: stage, data: data, packer: packer)
            return try drive(runner, context, from: startStep, globalStep: &globalStep, tokens: &tokens)
        case .grpo(let settings):
            var stage = stage
            let data = try openPostTrainingData(&stage, index: si, form: .prompts, vocab: model.config.vocabSize)
            let context = try stageContext(stage, index: si, model: model, momentsFrom: momentsFrom)
            let runner = try GRPORunner(context, stage: stage, settings: settings, data: data)
            return try drive(runner, context, from: startStep, globalStep: &globalStep, tokens: &tokens)
        case .reward(let settings):
            var stage = stage
            let data = try openPostTrainingData(&stage, index: si, form: .preferences, vocab: model.config.vocabSize)
            let context = try stageContext(stage, index: si, model: model, momentsFrom: momentsFrom)
            let runner = RewardRunner(context, stage: stage, settings: settings, data: data)
            let blind = runner.pairsCutAlike(first: 256)
            if blind > 0 {
                log("stage \(stage.name): \(blind) of the first \(Swift.min(256, data.count ?? 256)) pairs are the same once cut to "
                    + "seq_len = \(stage.seqLen) tokens: they teach nothing; raise seq_len")
            }
            return try drive(runner, context, from: startStep, globalStep: &globalStep, tokens: &tokens)
        }
    }

    /// A post-training stage's conversations or prompts, rendered with its chat format; with
    /// nothing held out, the stage's evaluation is turned off (and said so).
    func openPostTrainingData(_ stage: inout Recipe.Stage, index si: Int, form: PostTrainingData.Form, vocab: Int) throws -> PostTrainingData {
        let heldOut = stage.kind.heldOut ?? Recipe.HeldOutData()
        let data = try PostTrainingData.open(paths.resolve(stage.data), form: form, format: try chatFormat(vocab: vocab, stage: si),
                                             evalData: heldOut.evalData.map(paths.resolve), evalFraction: heldOut.evalFraction)
        if data.format.isTemplate {
            let source = Self.tokenizerSource(recipe: recipe, paths: paths, stage: si)!
            log("stage \(stage.name): conversations rendered with the chat template of \(source)")
        }
        if let sft = stage.sft, let n = data.count, !sft.packing {
            // Cut, never dropped: say up front how many conversations do not fit a row.
            let long = (0..<n).filter { data.renderedConversation($0, seed: recipe.seed).tokens.count > stage.seqLen + 1 }.count
            if long > 0 {
                log("stage \(stage.name): \(long) of \(n) conversations are longer than seq_len + 1 = \(stage.seqLen + 1) tokens "
                    + "and are cut (truncated_conversations_local counts them per step)")
            }
        }
        if !data.hasHeldOut, stage.evalEvery > 0 {
            log("stage \(stage.name): no eval_data or eval_fraction, so no held-out evaluation")
            stage.evalEvery = 0
        }
        return data
    }

    /// The stage's engine, set up as the stage says (and with the optimizer moments of a
    /// resumed run), and what its runner shares.
    func stageContext(_ stage: Recipe.Stage, index si: Int, model: DeepSeekForCausalLM, momentsFrom: String?) throws -> StageContext {
        let dropping = stage.capacityFactor.map { TokenDropping(capacityFactor: $0, neverDropFraction: stage.neverDropFraction) }
        let engine = GridTrainer(model: model, grid: grid, adam: stage.adam, clip: Float(stage.clip),
                                     alphas: .init(expert: stage.alphas.expert ?? model.config.auxLossAlpha,
                                                   device: stage.alphas.device, communication: stage.alphas.communication),
                                     dropping: dropping, seed: recipe.seed, commDType: recipe.parallel.commDType)
        try configureBalancing(engine, stage: stage, index: si)
        try configureMTP(engine, stage: stage, index: si)
        if let momentsFrom {
            try ShardedCheckpoint.loadMoments(momentsFrom, trainer: engine)
        }
        let rewards = try rewardFunctions(stage)
        return StageContext(trainer: self, engine: engine, index: si, inference: ShardedInference(engine), rewards: rewards)
    }

    func stageError(_ index: Int, _ key: String, _ message: String) -> RecipeError {
        RecipeError(file: "recipe", line: nil, column: nil, path: "stages[\(index)].\(key)", message: message)
    }

    /// `moe.bias_update_speed`: V3's aux-loss-free balancing, which needs the router's bias.
    func configureBalancing(_ engine: GridTrainer, stage: Recipe.Stage, index si: Int) throws {
        guard stage.biasUpdateSpeed > 0 else { return }
        let model = engine.model
        guard model.config.topkMethod == .noauxTC else {
            throw stageError(si, "moe.bias_update_speed", "is \(stage.biasUpdateSpeed), but the model's router has no bias (topk_method is "
                             + "\"\(model.config.topkMethod.rawValue)\"; aux-loss-free balancing needs V3's \"noaux_tc\")")
        }
        engine.biasUpdateSpeed = Float(stage.biasUpdateSpeed)
    }

    /// `mtp:`: the depths trained, which the model must have and the stage must be able to use.
    func configureMTP(_ engine: GridTrainer, stage: Recipe.Stage, index si: Int) throws {
        guard stage.mtpDepth > 0 else { return }
        let have = engine.model.config.numNextnPredictLayers
        guard stage.mtpDepth <= have else {
            throw stageError(si, "mtp.depth", "is \(stage.mtpDepth), but the model has \(have) MTP depth\(have == 1 ? "" : "s") "
                             + "(num_nextn_predict_layers)")
        }
        guard grid.layout.pp == 1 else {
            throw stageError(si, "mtp.depth", "is \(stage.mtpDepth) with parallel.pp = \(grid.layout.pp): MTP reads the embedding, "
                             + "which only the first pipeline stage holds (use pp: 1)")
        }
        let packed = stage.sft?.packing == true
        guard !packed, stage.grpo == nil else {
            throw stageError(si, "mtp.depth", "is \(stage.mtpDepth) in a \(packed ? "packed SFT" : "GRPO") stage; "
                             + "MTP trains pretraining and unpacked SFT stages")
        }
        engine.mtpDepth = stage.mtpDepth
        engine.mtpWeight = Float(stage.mtpWeight)
    }

    /// Where a stage's loop is: its step, the run's global step and tokens, skipped steps, and
    /// the row of the closing table.
    struct StageProgress {
        var step: Int
        let startStep: Int
        var globalStep: Int
        var tokens: Int
        var nanRun = 0, nanTotal = 0
        let start = now()
        var summary: StageSummary
    }

    /// What MFU divides by: FLOPs per token and the job's sgemm peak (SgemmPeak: measured here
    /// at a rank's thread count with the kernel in use, cached per machine).
    struct Throughput {
        let flopsPerToken: Double
        let peak: Double
    }

    /// The loop every stage kind runs: steps until the stage's last, each written to the
    /// metrics, logged, evaluated and checkpointed as the recipe says; stops early, after a
    /// checkpoint, when a signal asks.
    func drive<R: StageRunner>(_ runner: R, _ context: StageContext, from startStep: Int, globalStep: inout Int,
                               tokens: inout Int) throws -> Outcome {
        let stage = runner.stage
        let throughput = Throughput(flopsPerToken: ModelPlan(context.engine.model.config, sequenceLength: stage.seqLen).flopsPerToken,
                                    peak: try SgemmPeak.job(world: grid.world, threads: Threads.count) * 1e9)
        var p = StageProgress(step: startStep, startStep: startStep, globalStep: globalStep, tokens: tokens,
                              summary: StageSummary(name: stage.name, kind: stage.kind.name, steps: stage.steps, seconds: 0, samples: 0))
        defer { (globalStep, tokens) = (p.globalStep, p.tokens) }
        if stage.evalEvery > 0 && startStep == 0 {
            let e = try runner.evaluate()
            if isRoot {
                (p.summary.lossBefore, p.summary.accuracyBefore, p.summary.rewardBefore) = (e.loss, e.accuracy, e.reward)
                p.summary.samples = e.samples
                log("before training: " + e.line)
            }
        }
        log(runner.opening(from: p.startStep))
        let schedule = stage.lrSchedule()
        context.engine.overlapGather = runner.readsParametersOnlyInSteps
        defer { context.engine.overlapGather = false }
        // The steps' parallel work goes to the spinning worker (docs/design.md §6.7): the dispatch
        // pool's wake-up is tens of microseconds a region, hundreds of times a step.
        let stopped = try SpinningWorker.serve {
            while p.step < stage.steps {
                if try runStep(runner, context, &p, lr: Float(schedule.lr(at: p.step)), throughput: throughput) == .stopped { return true }
            }
            return false
        }
        if stopped { return .stopped }
        try context.engine.settleParameters()
        p.summary.seconds = now() - p.start
        summaries.append(p.summary)
        return .finished
    }

    /// One step of the loop: train, measure, evaluate when due, write, log, checkpoint.
    func runStep<R: StageRunner>(_ runner: R, _ context: StageContext, _ p: inout StageProgress, lr: Float,
                                 throughput: Throughput) throws -> Outcome {
        let stage = runner.stage, t0 = now()
        if let f = RecipeTrainer.injectedFault, f.rank == grid.world.rank, f.step == p.globalStep + 1 {
            throw Failure(description: "injected failure at global step \(f.step) (DEEPTRAIN_FAULT_STEP)", exitCode: 3)
        }
        let (r, extra, stepTokens) = try trainStep(runner, context, p, lr: lr)
        // Measured, not estimated: each rank's peak resident memory so far (VmHWM).
        let rss = try grid.world.allgather([ProcessStats.peakRSSMiB])
        countSkipped(r, &p)
        p.step += 1
        p.globalStep += 1
        p.tokens += stepTokens
        var m = StepMetrics(stage: stage.name, step: p.step, globalStep: p.globalStep, tokens: p.tokens, lr: lr, result: r,
                            mtp: context.engine.mtpDepth > 0)
        m.tokensPerS = Double(stepTokens) / (now() - t0)
        m.mfu = m.tokensPerS * throughput.flopsPerToken / throughput.peak
        m.elapsedS = now() - p.start
        (m.nanSkipped, m.ranks, m.peakRssMb, m.rankPeakRssMb) = (p.nanTotal, grid.world.size, rss.max() ?? 0, rss)
        if stage.evalEvery > 0 && (p.step % stage.evalEvery == 0 || p.step == stage.steps) {
            try context.engine.settleParameters()
            try evaluate(runner, into: &m, &p)
        }
        // Measured after the step's evaluation too: other ranks' weights this rank touched (mincore).
        m.rankForeignWeightsMb = try grid.world.allgather([Double(context.engine.foreignResidentBytes()) / 1_048_576])
        runDirectory?.writeMetrics(MetricsLine(common: m, extra: extra))
        if p.nanRun >= stage.maxNaNSteps {
            throw Failure(description: "stage \(stage.name): \(p.nanRun) steps in a row with a non-finite loss or gradient "
                          + "(max_nan_steps = \(stage.maxNaNSteps)); lower optimizer.lr or check the data", exitCode: 3)
        }
        if p.step % stage.logEvery == 0 || p.step == stage.steps {
            let eta = m.elapsedS / Double(p.step - p.startStep) * Double(stage.steps - p.step)
            report(runner.progressLine(m, extra, steps: stage.steps, eta: eta), step: p.step, of: stage.steps)
        }
        return try checkpointIfDue(context, stage: stage, p)
    }

    /// The runner's step; a reward function's failure stops the stage after a checkpoint of the
    /// last finished step (its weights are untouched).
    func trainStep<R: StageRunner>(_ runner: R, _ context: StageContext, _ p: StageProgress,
                                   lr: Float) throws -> (result: GridTrainer.StepResult, metrics: R.Metrics, tokens: Int) {
        do {
            return try runner.step(p.step, globalStep: p.globalStep, lr: lr)
        } catch let e as RewardStop {
            try saveCheckpoint(model: context.engine.model, trainer: context.engine, stage: runner.stage, index: context.index,
                               step: p.step, globalStep: p.globalStep, tokens: p.tokens)
            throw Failure(description: "stage \(runner.stage.name) stopped before step \(p.step + 1): \(e.message); a checkpoint of step "
                          + "\(p.step) is written: fix the reward and continue with --resume auto", exitCode: 3)
        }
    }

    /// Counts a step the engine skipped for a non-finite loss or gradient.
    func countSkipped(_ r: GridTrainer.StepResult, _ p: inout StageProgress) {
        if r.updated {
            p.nanRun = 0
        } else {
            p.nanRun += 1
            p.nanTotal += 1
            log("step \(p.step + 1): non-finite loss or gradient, step skipped (\(p.nanRun) in a row)")
        }
    }

    /// An evaluation step: its numbers into the step's metrics and the closing table.
    func evaluate<R: StageRunner>(_ runner: R, into m: inout StepMetrics, _ p: inout StageProgress) throws {
        let e = try runner.evaluate()
        guard isRoot else { return }
        m.record(e)
        (p.summary.lossAfter, p.summary.accuracyAfter, p.summary.rewardAfter) = (e.loss, e.accuracy, e.reward)
        p.summary.samples = e.samples
        log("step \(p.step)/\(runner.stage.steps)  " + e.line)
    }

    /// A progress line: to train.log on every rank that has one, and to the terminal (as a bar
    /// when it is one) on world rank 0.
    func report(_ line: String, step: Int, of steps: Int) {
        runDirectory?.logLine(line)
        guard isRoot else { return }
        if isTerminal {
            let width = 30, done = width * step / steps
            progress("\u{1B}[2K\r[" + String(repeating: "=", count: done) + String(repeating: " ", count: width - done) + "] " + line)
        } else {
            progress(line)
        }
    }

    /// A checkpoint after the stage's last step, every `checkpoint.every` steps, and when a
    /// signal asks to stop — on every rank after the same step (mpirun forwards a signal to
    /// each rank at its own moment).
    func checkpointIfDue(_ context: StageContext, stage: Recipe.Stage, _ p: StageProgress) throws -> Outcome {
        var stop = [Double(stopRequested)]
        try grid.world.allreduceMax(&stop)
        let stopNow = stop[0] != 0, last = p.step == stage.steps
        if stopNow || last || (recipe.checkpoint.every > 0 && p.step % recipe.checkpoint.every == 0) {
            try context.engine.settleParameters()
            try saveCheckpoint(model: context.engine.model, trainer: context.engine, stage: stage, index: context.index,
                               step: p.step, globalStep: p.globalStep, tokens: p.tokens)
        }
        guard stopNow else { return .finished }
        log("stopped by signal after step \(p.step); checkpoint written")
        return .stopped
    }
}
