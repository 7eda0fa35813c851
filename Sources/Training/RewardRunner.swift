import Foundation
import Autograd
import DeepSeek
import Data
import Parallel

/// A reward-model stage (docs/reward.md, TRL's RewardTrainer): each step takes `batch_size`
/// preference pairs; a micro-batch's rows are its pairs' chosen conversations, then their
/// rejected ones, each cut or padded to `seq_len`; the model's scalar head at each row's last
/// token is its reward, and the loss is Bradley–Terry's. Pair g of the stage's stream is
/// sequence g of its steps, so every layout trains on the same rows.
final class RewardRunner: StageRunner {
    let context: StageContext
    let stage: Recipe.Stage
    let data: PostTrainingData
    let loss: BradleyTerry

    init(_ context: StageContext, stage: Recipe.Stage, settings: Recipe.RewardSettings, data: PostTrainingData) {
        self.context = context
        self.stage = stage
        self.data = data
        loss = BradleyTerry(centerCoefficient: settings.centerRewardsCoefficient)
    }

    var pairsPerMicroBatch: Int { stage.batchSize / context.trainer.recipe.parallel.microbatches }

    func opening(from step: Int) -> String {
        "stage \(context.index) \(stage.name): reward model on \(stage.data), \(stage.steps) steps of \(stage.batchSize) pairs "
            + "of ≤ \(stage.seqLen) tokens, from step \(step)"
    }

    /// `pairs` as rows: every chosen conversation, then every rejected one, cut or padded to
    /// `length`, with each row's last real token (row-major position) and the pairs' margins.
    static func rows(_ pairs: [PreferencePair], format: ChatFormat, length: Int) throws -> (ids: [Int], last: [Int], margins: [Float]?) {
        var ids: [Int] = [], last: [Int] = []
        for (r, conv) in (pairs.map(\.chosen) + pairs.map(\.rejected)).enumerated() {
            let tokens = Array(try format.render(conv).tokens.prefix(length))
            ids += tokens + [Int](repeating: format.pad, count: length - tokens.count)
            last.append(r * length + Swift.max(tokens.count, 1) - 1)
        }
        let margins = pairs.contains { $0.margin != nil } ? pairs.map { Float($0.margin ?? 0) } : nil
        return (ids, last, margins)
    }

    /// How many of the stream's first `n` pairs (a file's, at most its size) have the same rows
    /// once cut to `seq_len`: their chosen and rejected turns differ only past the cut.
    func pairsCutAlike(first n: Int) -> Int {
        (0..<Swift.min(n, data.count ?? n)).filter { g in
            let pair = data.preferencePair(g, seed: context.seed)
            guard let x = try? Self.rows([pair], format: data.format, length: stage.seqLen) else { return false }
            return x.ids[..<stage.seqLen] == x.ids[stage.seqLen...] && x.last[0] == x.last[1] - stage.seqLen
        }.count
    }

    func step(_ step: Int, globalStep: Int, lr: Float) throws -> (result: GridTrainer.StepResult, metrics: RewardMetrics, tokens: Int) {
        let p = pairsPerMicroBatch, first = step * stage.batchSize
        let micro = context.trainer.recipe.parallel.microbatches
        func pairs(_ m: Int) -> [PreferencePair] { (0..<p).map { data.preferencePair(first + m * p + $0, seed: context.seed) } }
        var failure: Error?
        let r = try context.engine.step(batch: { m in
            let rows = (try? Self.rows(pairs(m), format: self.data.format, length: self.stage.seqLen))?.ids ?? []
            return GridTrainer.MicroBatch(inputs: rows, targets: [], firstSequence: globalStep * self.stage.batchSize + m * p)
        }, rows: 2 * p, length: stage.seqLen, lr: lr, step: globalStep, objective: { scores, m in
            do {
                let x = try Self.rows(pairs(m), format: self.data.format, length: self.stage.seqLen)
                let rewards = DeepSeekForCausalLM.rewards(scores, lastPositions: x.last)
                let (value, stats) = self.loss.loss(chosen: rewards.indexSelect(Array(0..<p)), rejected: rewards.indexSelect(Array(p..<(2 * p))),
                                                    margins: x.margins, share: 1 / Float(micro))
                return (value, stats.asArray)
            } catch {
                failure = error
                return (Tensor(scalar: 0), BradleyTerry.Stats().asArray)
            }
        }, extraStats: BradleyTerry.Stats().asArray.count)
        if let failure { throw failure }
        let s = BradleyTerry.Stats(r.extra)
        return (r, RewardMetrics(accuracy: s.correct / Swift.max(s.pairs, 1), margin: s.marginSum / Swift.max(s.pairs, 1)),
                2 * stage.batchSize * stage.seqLen)
    }

    var readsParametersOnlyInSteps: Bool { true }

    /// Held-out pairs (`eval_samples` of them) in batches of 16, batch j on data-parallel
    /// position j mod dp; the loss and accuracy are summed over the world, the same at every layout.
    func evaluate() throws -> Evaluation {
        let grid = context.engine.grid, pairs = data.heldOutPreferences(stage.evalSamples)
        let batches = stride(from: 0, to: pairs.count, by: 16).map { Array(pairs[$0..<Swift.min($0 + 16, pairs.count)]) }
        let mine = Array(stride(from: grid.dpRank, to: batches.count, by: grid.layout.dp))
        let rows = try mine.map { try Self.rows(batches[$0], format: data.format, length: stage.seqLen) }
        var sums = [0.0, 0.0, 0.0]  // Σ loss·pairs, correct, pairs
        try context.inference.forward(rows.enumerated().map { j, x in
            ShardedInference.Batch(ids: x.ids, rows: 2 * batches[mine[j]].count, length: stage.seqLen)
        }) { j, scores in
            let n = batches[mine[j]].count, x = rows[j]
            let rewards = DeepSeekForCausalLM.rewards(scores, lastPositions: x.last)
            let (value, s) = loss.loss(chosen: rewards.indexSelect(Array(0..<n)), rejected: rewards.indexSelect(Array(n..<(2 * n))),
                                       margins: x.margins)
            sums[0] += Double(value.item) * Double(n)
            sums[1] += s.correct
            sums[2] += s.pairs
        }
        try grid.world.allreduceSum(&sums)  // only each position's last stage has scores
        return Evaluation(loss: sums[0] / Swift.max(sums[2], 1), accuracy: nil, reward: nil, samples: Int(sums[2]),
                          pairwiseAccuracy: sums[1] / Swift.max(sums[2], 1))
    }

    func progressLine(_ common: StepMetrics, _ m: RewardMetrics, steps: Int, eta: Double) -> String {
        String(format: "step %5d/%d  loss %.4f  accuracy %.3f  margin %.3f  grad_norm %.3f  lr %.2e  eta %.0fs",
               common.step, steps, common.loss, m.accuracy, m.margin, common.gradNorm, common.lr, eta)
    }
}

/// What a reward-model step adds to `metrics.jsonl`, under TRL's names.
struct RewardMetrics: Codable, Sendable {
    /// Share of the step's pairs whose chosen conversation scored higher.
    var accuracy: Double
    /// Mean r_chosen − r_rejected over the step's pairs.
    var margin: Double
}
