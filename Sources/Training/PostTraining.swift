import Foundation
import Autograd
import NN
import DeepSeek
import Data
import Collectives
import Parallel
import Checkpoint
import Optim

/// GRPO stopped because a reward function failed on some rank (after the current step's
/// weights were left untouched): the trainer writes a checkpoint, then reports it.
struct RewardStop: Error { let message: String }

extension RecipeTrainer {
    /// The stage's reward functions and weights (GRPO), or exact + format (0.2) for evaluating
    /// other stages.
    func rewardFunctions(_ stage: Recipe.Stage) throws -> [(RewardFunction, Double)] {
        let specs = stage.grpo?.rewards ?? Recipe.GRPOSettings().rewards
        return try specs.map { spec in
            switch spec.kind {
            case .exact: return (ExactAnswerReward(), spec.weight)
            case .format(let pattern): return (AnswerFormatReward(pattern: try pattern.map { try TokenRegex($0) }), spec.weight)
            case .command(let command): return (CommandReward(name: "command", command: command), spec.weight)
            case .model(let checkpoint): return (try modelReward(checkpoint), spec.weight)
            }
        }
    }

    /// The reward model at `spec` on this grid, each rank holding its part (its stage's layers,
    /// its ep block's experts), as the policy's.
    func modelReward(_ spec: String) throws -> ModelReward {
        let path = paths.resolve(spec)
        let policy = try recipe.model.config(relativeTo: paths.directory)
        let holds = grid.holds(experts: policy.nRoutedExperts)
        let model: DeepSeekForCausalLM
        if let dir = hfDirectory(spec) {
            model = try HFDirectory.load(dir, positions: rotaryPositions(), holds: holds)
        } else {
            model = try CheckpointStore.load(path, positions: rotaryPositions(), holds: holds).0
        }
        guard model.config.isRewardModel else {
            throw CheckpointError(path, "holds a language model, not a reward model (train one with a reward stage, docs/reward.md)")
        }
        guard model.config.vocabSize == policy.vocabSize else {
            throw CheckpointError(path, "is a reward model of vocab_size \(model.config.vocabSize); the policy's is \(policy.vocabSize): "
                                  + "it must read the policy's tokens")
        }
        let engine = GridTrainer(model: model, grid: grid, adam: AdamW.Config(), clip: 1, alphas: .init(expert: 0, device: 0, communication: 0),
                                 dropping: nil, seed: recipe.seed, commDType: recipe.parallel.commDType)
        log("reward model \(path) scores the completions")
        return ModelReward(inference: ShardedInference(engine), source: path)
    }
}

/// The GRPO stage's steps (docs/design.md §10, TRL's GRPOTrainer): every `num_iterations` optimizer
/// steps a generation batch — `prompts_per_step` prompts × `num_generations` completions,
/// sampled with the latent KV cache — is scored and turned into group-normalised advantages;
/// each step then minimises the clipped objective with the KL to the stage's initial weights.
///
/// Completion i of generation batch b is sampled with a counter RNG keyed by (seed, b, i), and
/// the global micro-batches split the completions, so each data-parallel position samples its
/// own micro-batches' completions — through its pipeline stages and the experts' all-to-all
/// (ShardedInference), no rank holding another's weights — and the results do not depend on the
/// layout. Rewards are all-gathered so that every group's advantages come from its whole group
/// wherever its completions were sampled.
final class GRPORunner: StageRunner {
    let context: StageContext
    var trainer: RecipeTrainer { context.trainer }
    var engine: GridTrainer { context.engine }
    let stage: Recipe.Stage
    let settings: Recipe.GRPOSettings
    let data: PostTrainingData
    var rewards: [(RewardFunction, Double)] { context.rewards }
    let objective: GRPOObjective
    /// The sharded model that samples and scores log-probabilities (evaluation has the context's).
    let inference: ShardedInference
    /// The frozen reference: the stage's initial values of this rank's part (`heldValues`).
    var reference: [Float]?
    let total: Int, rows: Int

    /// The current generation batch (every completion's slot; this rank fills its own).
    struct Batch {
        var index: Int
        var length: Int
        var prompts: [[Int]]
        var completions: [[Int]]
        var mask: [[Float]]
        var advantages: [Double]
        var old: [[Float]]?
        var ref: [[Float]]?
        var tokens: Double
        var metrics: GenerationMetrics
        /// What the sampling saw of this rank's completions: log p of each sampled token (last
        /// stage), and per MoE layer of the stage the experts chosen at each fed position.
        var sampleLogps: [[Float]]
        var routes: [[Int: [Int]]]
    }
    var batch: Batch?
    /// This step's rollout–training agreement on the sampled tokens: Σ and max of
    /// |log p_sample − log p_old|, and their count (the last stage's micro-batches).
    var agreement = (sum: 0.0, max: 0.0, count: 0.0)

    init(_ context: StageContext, stage: Recipe.Stage, settings: Recipe.GRPOSettings, data: PostTrainingData) throws {
        self.context = context
        self.stage = stage
        self.settings = settings
        self.data = data
        let engine = context.engine
        total = settings.promptsPerStep * settings.numGenerations
        let micro = engine.grid.layout.microbatches
        guard total % micro == 0 else {
            throw RecipeError(file: "recipe", line: nil, column: nil, path: "stages[\(stage.name)].grpo",
                              message: "prompts_per_step × num_generations = \(total) completions do not split into parallel.microbatches = \(micro); use a multiple of \(micro)")
        }
        rows = total / micro
        objective = GRPOObjective(lossType: settings.lossType, beta: settings.beta, epsilonLow: settings.epsilon,
                                  epsilonHigh: settings.epsilonHigh, maxCompletionLength: settings.maxCompletionLength,
                                  importanceSampling: settings.importanceSampling, topEntropyQuantile: settings.topEntropyQuantile,
                                  soft: settings.soft)
        inference = ShardedInference(engine)
        reference = settings.beta != 0 ? engine.heldValues() : nil
    }

    var grid: ProcessGrid { engine.grid }

    /// Per-token log-probabilities of each row's completion tokens under `logits` [R, L, V]
    /// (scaled by 1/temperature as in sampling): [R, Tc]; and with `entropies` the policy's
    /// entropy at each of those positions, −Σ p·log p (no gradient).
    func logps(_ logits: Tensor, prompts: ArraySlice<[Int]>, completions: ArraySlice<[Int]>, length l: Int) -> Tensor {
        logpsAndEntropies(logits, prompts: prompts, completions: completions, length: l, entropies: false).logps
    }

    func logpsAndEntropies(_ logits: Tensor, prompts: ArraySlice<[Int]>, completions: ArraySlice<[Int]>, length l: Int,
                           entropies: Bool) -> (logps: Tensor, entropies: [Float]?) {
        let r = prompts.count, tc = settings.maxCompletionLength, v = logits.shape[2]
        var positions: [Int] = [], targets: [Int] = []
        for (i, (p, c)) in zip(prompts, completions).enumerated() {
            for j in 0..<tc {
                positions.append(i * l + Swift.min(p.count + j - 1, l - 1))
                targets.append(j < c.count ? c[j] : 0)
            }
        }
        var x = logits.reshape([r * l, v]).indexSelect(positions)
        if settings.temperature != 1 { x = x * Float(1 / settings.temperature) }
        let logSoftmax = x.logSoftmax()
        let lp = logSoftmax.gatherLast(targets, k: 1).reshape([r, tc])
        guard entropies else { return (lp, nil) }
        let ls = logSoftmax.contiguousNoGrad()
        let h = (0..<(r * tc)).map { p in
            var sum: Float = 0
            for k in 0..<v { let y = ls.data[p * v + k]; sum -= Foundation.exp(y) * y }
            return sum
        }
        return (lp, h)
    }

    func rowsOf(_ prompts: ArraySlice<[Int]>, _ completions: ArraySlice<[Int]>, length l: Int) -> [Int] {
        var ids: [Int] = []
        for (p, c) in zip(prompts, completions) {
            var row = p + c
            row += [Int](repeating: data.format.pad, count: l - row.count)
            ids += row
        }
        return ids
    }

    /// Samples, scores and prepares generation batch `index`.
    func generate(index b: Int) throws -> Batch {
        let g = settings.numGenerations, tc = settings.maxCompletionLength
        let prompts = (0..<settings.promptsPerStep).map { data.prompt(b * settings.promptsPerStep + $0, seed: trainer.recipe.seed) }
        let promptTokens = (0..<settings.promptsPerStep).map { i in
            inference.fitted(data.promptTokens(b * settings.promptsPerStep + i, seed: trainer.recipe.seed), maxNew: tc)
        }
        let length = promptTokens.map(\.count).max()! + tc
        var completions = [[Int]](repeating: [], count: total), truncated = [Bool](repeating: false, count: total)
        var texts = [String](repeating: "", count: total)
        let mine = grid.micros.flatMap { ($0 * rows)..<(($0 + 1) * rows) }
        let sampleSeed = trainer.recipe.seed ^ 0x6772_706F  // "grpo"
        let stop = data.format.stop
        let requests = mine.map { i in
            ShardedInference.Request(prompt: promptTokens[i / g], maxNew: tc,
                                     sampler: Sampler(temperature: Float(settings.temperature), topP: Float(settings.topP),
                                                      seed: Philox(seed: sampleSeed, purpose: "grpo-sample", UInt64(b)).uint64(UInt64(i))),
                                     stop: Set(stop))
        }
        // A prompt's completions within one global micro-batch decode as one batch (the layout
        // decides neither, so the completions do not depend on it).
        var groups: [Range<Int>] = []
        for (j, i) in mine.enumerated() {
            if let open = groups.last, j > 0, mine[j - 1] / g == i / g, mine[j - 1] / rows == i / rows {
                groups[groups.count - 1] = open.lowerBound..<(j + 1)
            } else {
                groups.append(j..<(j + 1))
            }
        }
        let sampling = now()
        let record = RolloutRecord(requests: requests.count)
        for (i, tokens) in zip(mine, try inference.generate(requests, groups: groups, record: record)) {
            let stopped = tokens.count < tc
            completions[i] = tokens + (stopped && !stop.isEmpty ? [stop[0]] : [])
            truncated[i] = !stopped
            texts[i] = try data.format.text(tokens)
        }
        var sampleLogps = [[Float]](repeating: [], count: total), routes = [[Int: [Int]]](repeating: [:], count: total)
        for (j, i) in mine.enumerated() { (sampleLogps[i], routes[i]) = (record.logps[j], record.experts[j]) }
        let scoring = now()
        let scores = try score(mine: mine, prompts: prompts, promptTokens: promptTokens, completions: completions, texts: texts, truncated: truncated, batch: b)
        let scored = now()
        let k = rewards.count
        var reward = (0..<total).map { i in (0..<k).reduce(0.0) { $0 + rewards[$1].1 * scores.scores[i][$1] } }
        if settings.control == .shuffleRewards {
            let rng = Philox(seed: trainer.recipe.seed, purpose: "grpo-shuffle", UInt64(b))
            let order = (0..<total).sorted { rng.uniform(UInt64($0)) < rng.uniform(UInt64($1)) }
            reward = order.map { reward[$0] }
        }
        let (adv, zero) = GRPOObjective.advantages(reward, groupSize: g, scale: settings.scaleRewards)
        var mask = [[Float]](repeating: [Float](repeating: 0, count: tc), count: total)
        var tokens = 0.0
        for i in 0..<total {
            let n = Int(scores.lengths[i]), cut = scores.truncated[i] != 0
            if settings.maskTruncated && cut { continue }
            for j in 0..<n { mask[i][j] = 1 }
            tokens += Double(n)
        }
        var out = Batch(index: b, length: length, prompts: (0..<total).map { promptTokens[$0 / g] }, completions: completions,
                        mask: mask, advantages: adv, old: nil, ref: nil, tokens: tokens,
                        metrics: metrics(reward, zeroStd: zero, scores: scores, batch: b), sampleLogps: sampleLogps, routes: routes)
        let forwards = now()
        try oldAndReferenceLogps(&out)
        (out.metrics.samplingS, out.metrics.rewardS, out.metrics.referenceS) = (scoring - sampling, scored - scoring, now() - forwards)
        return out
    }

    /// π_old (for μ > 1) and the reference, for this position's completions, without
    /// gradients, through the stages (the reference: the frozen values swapped in).
    func oldAndReferenceLogps(_ out: inout Batch) throws {
        guard settings.numIterations > 1 || reference != nil else { return }
        let tc = settings.maxCompletionLength, length = out.length, prompts = out.prompts, completions = out.completions
        var old = [[Float]](repeating: [], count: total), ref = [[Float]](repeating: [], count: total)
        let micros = Array(grid.micros)
        var batches = micros.map { m in
            let range = (m * rows)..<((m + 1) * rows)
            return ShardedInference.Batch(ids: rowsOf(prompts[range], completions[range], length: length), rows: rows, length: length)
        }
        func logps(into table: inout [[Float]]) throws {
            try inference.forward(batches) { j, logits in
                let range = (micros[j] * rows)..<((micros[j] + 1) * rows)
                let lp = self.logps(logits, prompts: prompts[range], completions: completions[range], length: length).contiguousNoGrad()
                for (r, i) in range.enumerated() { table[i] = Array(UnsafeBufferPointer(start: lp.data + r * tc, count: tc)) }
            }
        }
        if settings.numIterations > 1 {
            // π_old routes as the training forward will (the reference keeps its own routing).
            if settings.routerReplay {
                for (j, m) in micros.enumerated() { batches[j].routes = routeReplay(out, micro: m) }
            }
            try logps(into: &old)
            out.old = old
            for j in batches.indices { batches[j].routes = nil }
        }
        if reference != nil {
            engine.swapHeld(&reference!)
            defer { engine.swapHeld(&reference!) }
            try logps(into: &ref)
            out.ref = ref
        }
    }

    /// The sampling's experts for global micro-batch `m`'s rows, laid out as the training forward
    /// sees them: [rows·length·K] per MoE layer of the stage, −1 where the sampling fed nothing.
    func routeReplay(_ cur: Batch, micro m: Int) -> RouteReplay {
        let k = engine.model.config.numExpertsPerTok, l = cur.length
        var table: [Int: [Int]] = [:]
        for (r, i) in ((m * rows)..<((m + 1) * rows)).enumerated() {
            for (layer, chosen) in cur.routes[i] {
                let n = Swift.min(chosen.count, l * k)
                table[layer, default: [Int](repeating: -1, count: rows * l * k)].replaceSubrange((r * l * k)..<(r * l * k + n),
                                                                                               with: chosen.prefix(n))
            }
        }
        return RouteReplay(experts: table, k: k, replay: settings.routerReplay)
    }

    /// |log p_sample − log p_old| over the trained tokens, into `agreement`.
    func recordAgreement(sample: [Float], old: [Float], mask: [Float]) {
        for (j, s) in sample.enumerated() where mask[j] != 0 {
            let d = Double(abs(s - old[j]))
            agreement.sum += d
            agreement.count += 1
            agreement.max = Swift.max(agreement.max, d)
        }
    }

    /// Scores of this position's completions, per reward function (on its first stage: every
    /// stage has the completions, one scores them); then everyone's.
    func score(mine: [Int], prompts: [PromptWithAnswer], promptTokens: [[Int]], completions: [[Int]], texts: [String], truncated: [Bool],
               batch b: Int) throws -> CompletionScores {
        let g = settings.numGenerations
        var scores = CompletionScores(completions: total, functions: rewards.count)
        if grid.isFirstStage { do {
            let batch = mine.map {
                Completion(prompt: prompts[$0 / g].prompt, answer: prompts[$0 / g].answer, completion: texts[$0], truncated: truncated[$0])
            }
            for (fi, (f, _)) in rewards.enumerated() where !(f is ModelReward) {
                let s = try f.score(batch)
                for (j, i) in mine.enumerated() { scores.scores[i][fi] = s[j] }
            }
        } catch {
            FileHandle.standardError.write(Data("error: \(grid.world.size > 1 ? "rank \(grid.world.rank): " : "")\(error)\n".utf8))
            scores.failed = 1
        }
        for i in mine {
            scores.lengths[i] = Double(completions[i].count)
            scores.truncated[i] = truncated[i] ? 1 : 0
            scores.sampledHere[i] = 1  // each completion on exactly one position
        } }
        for (fi, (f, _)) in rewards.enumerated() {
            guard let model = f as? ModelReward else { continue }
            // Every rank of the position takes part; its last stage has the scores.
            let micros = Array(grid.micros)
            let rowsOfMicro = micros.map { m in ((m * rows)..<((m + 1) * rows)).map { (promptTokens[$0 / g], completions[$0]) } }
            let got = try model.scores(rowsOfMicro, pad: data.format.pad)
            for (j, m) in micros.enumerated() where grid.isLastStage {
                for (r, i) in ((m * rows)..<((m + 1) * rows)).enumerated() { scores.scores[i][fi] = got[j][r] }
            }
        }
        scores = try scores.gathered(grid.world)
        if scores.failed != 0 {
            throw RewardStop(message: "a reward function failed during generation batch \(b) (the rank's message is above)")
        }
        return scores
    }

    /// The generation batch's metrics (TRL's): rewards after any control, before advantages.
    func metrics(_ reward: [Double], zeroStd zero: [Bool], scores: CompletionScores, batch b: Int) -> GenerationMetrics {
        let n = Double(total)
        let mean = reward.reduce(0, +) / n
        let std = (reward.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Swift.max(n - 1, 1)).squareRoot()
        var byFunction: [String: Double] = [:]
        for (fi, (f, _)) in rewards.enumerated() {
            byFunction[f.name] = (0..<total).reduce(0.0) { $0 + scores.scores[$1][fi] } / n
        }
        return GenerationMetrics(rewardMean: mean, rewardStd: std, rewardsByFunction: byFunction,
                                 completionLenMean: (0..<total).reduce(0.0) { $0 + scores.lengths[$1] } / n,
                                 fracZeroStdGroups: Double(zero.filter { $0 }.count) / Double(zero.count),
                                 truncatedFraction: (0..<total).reduce(0.0) { $0 + scores.truncated[$1] } / n, generationBatch: b)
    }

    /// One optimizer step: a new generation batch every `num_iterations` steps, then the
    /// objective on it. Returns the step, its metrics and the tokens it trained on.
    func step(_ step: Int, globalStep: Int, lr: Float) throws -> (result: GridTrainer.StepResult, metrics: GRPOMetrics, tokens: Int) {
        let b = step / settings.numIterations
        if batch?.index != b {
            let t0 = now()
            batch = try generate(index: b)
            batch!.metrics.generationS = now() - t0
        }
        let cur = batch!
        let micro = grid.layout.microbatches
        var replays: [RouteReplay] = []
        agreement = (0, 0, 0)
        let r = try engine.step(batch: { m in
            let range = (m * self.rows)..<((m + 1) * self.rows)
            let ids = self.rowsOf(cur.prompts[range], cur.completions[range], length: cur.length)
            let routes = self.routeReplay(cur, micro: m)
            replays.append(routes)
            return GridTrainer.MicroBatch(inputs: ids, targets: [], firstSequence: range.lowerBound, routes: routes)
        }, rows: rows, length: cur.length, lr: lr, step: globalStep, objective: { logits, m in
            let range = (m * self.rows)..<((m + 1) * self.rows)
            let (lp, entropies) = self.logpsAndEntropies(logits, prompts: cur.prompts[range], completions: cur.completions[range],
                                                         length: cur.length, entropies: true)
            let tc = self.settings.maxCompletionLength
            // π_old: the π_old forward's (μ > 1) or this forward's own (μ = 1: the same weights).
            let own = lp.contiguousNoGrad()
            let old = cur.old.map { o in range.flatMap { o[$0] } } ?? Array(UnsafeBufferPointer(start: own.data, count: range.count * tc))
            let sample = range.flatMap { i in (0..<tc).map { j in j < cur.sampleLogps[i].count ? cur.sampleLogps[i][j] : 0 } }
            let mask = range.flatMap { cur.mask[$0] }
            self.recordAgreement(sample: sample, old: old, mask: mask)
            let correction = self.settings.samplingCorrection?.weights(old: old, sample: sample, mask: mask, rows: range.count, t: tc)
            let (loss, s) = self.objective.loss(lp, old: cur.old.map { o in range.flatMap { o[$0] } },
                                                ref: cur.ref.map { o in range.flatMap { o[$0] } }, entropies: entropies,
                                                correction: correction,
                                                advantages: range.map { Float(cur.advantages[$0]) }, mask: range.flatMap { cur.mask[$0] },
                                                totalRows: self.total, microbatches: micro, totalTokens: cur.tokens)
            return (loss, s.asArray)
        }, extraStats: GRPOObjective.Stats().asArray.count)
        let s = GRPOObjective.Stats(r.extra)
        var m = GRPOMetrics(generation: cur.metrics, kl: s.tokens > 0 ? s.klSum / s.tokens : 0,
                            clipFraction: s.clipCount > 0 ? s.clipped / s.clipCount : 0,
                            entropy: s.tokens > 0 ? s.entropySum / s.tokens : 0)
        m.agreement = try agreementMetrics(replays)
        return (r, m, Int(cur.tokens))
    }

    /// The step's agreement figures, the same on every rank: each (token, layer) routing is
    /// compared on the stage holding the layer, each sampled token on its position's last stage.
    func agreementMetrics(_ replays: [RouteReplay]) throws -> RolloutAgreement {
        var sums = [agreement.sum, agreement.count, Double(replays.reduce(0) { $0 + $1.compared }),
                    Double(replays.reduce(0) { $0 + $1.differing })]
        var most = [agreement.max]
        try grid.world.allreduceSum(&sums)
        try grid.world.allreduceMax(&most)
        return RolloutAgreement(logpDifferenceMean: sums[1] > 0 ? sums[0] / sums[1] : 0, logpDifferenceMax: most[0],
                                routingMismatch: sums[2] > 0 ? sums[3] / sums[2] : 0, routerReplay: settings.routerReplay)
    }

    func opening(from step: Int) -> String {
        "stage \(context.index) \(stage.name): grpo on \(stage.data), \(stage.steps) steps; \(settings.promptsPerStep) prompts × "
            + "\(settings.numGenerations) completions of ≤ \(settings.maxCompletionLength) tokens every \(settings.numIterations) step(s), "
            + "loss \(settings.lossType.rawValue), β \(settings.beta)" + (settings.routerReplay ? ", router replay" : "") + ", from step \(step)"
    }

    func evaluate() throws -> Evaluation {
        try trainer.evaluateChat(context.inference, data: data, stage: stage, rewards: rewards)
    }

    func progressLine(_ common: StepMetrics, _ m: GRPOMetrics, steps: Int, eta: Double) -> String {
        String(format: "step %5d/%d  reward %.3f ± %.3f  kl %.4f  clip %.3f  len %.1f  zero-std groups %.2f  grad_norm %.3f  eta %.0fs",
               common.step, steps, m.generation.rewardMean, m.generation.rewardStd, m.kl, m.clipFraction,
               m.generation.completionLenMean, m.generation.fracZeroStdGroups, common.gradNorm, eta)
    }
}
