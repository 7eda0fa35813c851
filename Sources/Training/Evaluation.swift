import Foundation
import Autograd
import DeepSeek
import Data
import Parallel

/// A stage's held-out numbers: loss, and for chat stages answer accuracy and mean reward.
struct Evaluation {
    var loss: Double
    var accuracy: Double?
    /// On world rank 0 only (reward commands run once).
    var reward: Double?
    var samples: Int
    /// Reward models: the share of held-out pairs whose chosen conversation scores higher.
    var pairwiseAccuracy: Double? = nil

    var line: String {
        String(format: "held-out loss %.4f", loss)
            + (accuracy.map { String(format: "  exact match %.1f%% of %d", 100 * $0, samples) } ?? "")
            + (pairwiseAccuracy.map { String(format: "  pairwise accuracy %.1f%% of %d pairs", 100 * $0, samples) } ?? "")
            + (reward.map { String(format: "  mean reward %.3f", $0) } ?? "")
    }
}

/// Held-out evaluation on the sharded model (every rank calls it; ShardedInference): batch and
/// prompt i go to data-parallel position i mod dp, which runs it through its stages and the
/// experts' all-to-all; each result has one contributor, so the world's sum gathers them
/// exactly and the totals are summed in batch order — the same numbers at every layout.
extension RecipeTrainer {
    /// One held-out batch and its targets (−100: none).
    struct HeldOutBatch {
        var batch: ShardedInference.Batch
        var targets: [Int]
    }

    /// The batches' cross-entropies, on every rank, in batch order.
    func heldOutLosses(_ inference: ShardedInference, _ batches: [HeldOutBatch]) throws -> [Double] {
        let dp = grid.layout.dp, mine = Array(stride(from: grid.dpRank, to: batches.count, by: dp))
        let vocab = inference.model.config.vocabSize
        var losses = [Double](repeating: 0, count: batches.count)
        try inference.forward(mine.map { batches[$0].batch }) { j, logits in
            let b = batches[mine[j]]
            losses[mine[j]] = Double(logits.reshape([b.batch.rows * b.batch.length, vocab]).crossEntropy(targets: b.targets).item)
        }
        try grid.world.allreduceSum(&losses)
        return losses
    }

    /// Greedy completions of `prompts` (at most `maxNew` tokens, ending at `stop`), on every rank.
    /// Prompts of one length decode together in batches of up to 16 (`lengthBatches`), batch j
    /// on data-parallel position j mod dp.
    func greedyCompletions(_ inference: ShardedInference, _ prompts: [[Int]], maxNew: Int, stop: Set<Int>) throws -> [[Int]] {
        let dp = grid.layout.dp
        let batches = ShardedInference.lengthBatches(prompts, width: 16)
        let mine = stride(from: grid.dpRank, to: batches.count, by: dp).flatMap { batches[$0] }
        var groups: [Range<Int>] = [], start = 0
        for j in stride(from: grid.dpRank, to: batches.count, by: dp) {
            groups.append(start..<(start + batches[j].count))
            start += batches[j].count
        }
        let got = try inference.generate(mine.map { ShardedInference.Request(prompt: prompts[$0], maxNew: maxNew, stop: stop) },
                                         groups: groups)
        // Per prompt: its length, then its tokens; written by the position's first stage.
        let width = maxNew + 1
        var table = [Double](repeating: 0, count: prompts.count * width)
        if grid.isFirstStage {
            for (i, tokens) in zip(mine, got) {
                table[i * width] = Double(tokens.count)
                for (k, t) in tokens.enumerated() { table[i * width + 1 + k] = Double(t) }
            }
        }
        try grid.world.allreduceSum(&table)
        return prompts.indices.map { i in (0..<Int(table[i * width])).map { Int(table[i * width + 1 + $0]) } }
    }

    /// Held-out loss over `eval.batches` batches, and exact-match accuracy where the data
    /// has checkable answers.
    func evaluate(_ inference: ShardedInference, data: DataSource, stage: Recipe.Stage) throws -> Evaluation {
        let b = Swift.min(stage.batchSize, 16)
        let batches = (0..<stage.evalBatches).map { i in
            let (ids, targets) = GridTrainer.MicroBatch.nextToken(data.heldOutRows(first: i * b, count: b, length: stage.seqLen + 1),
                                                                     rows: b, length: stage.seqLen)
            return HeldOutBatch(batch: .init(ids: ids, rows: b, length: stage.seqLen), targets: targets)
        }
        let losses = try heldOutLosses(inference, batches)
        let loss = losses.reduce(0, +) / Double(stage.evalBatches)
        guard let (problems, stop, maxNew) = data.exactMatchProblems(samples: stage.evalSamples) else {
            return Evaluation(loss: loss, accuracy: nil, reward: nil, samples: 0)
        }
        let completions = try greedyCompletions(inference, problems.map(\.prompt), maxNew: maxNew, stop: [stop])
        let correct = zip(problems, completions).filter { DataSource.matches($1, $0.answer) }.count
        return Evaluation(loss: loss, accuracy: Double(correct) / Double(Swift.max(problems.count, 1)), reward: nil, samples: problems.count)
    }

    /// Held-out answer loss (assistant tokens of held-out conversations) and, by greedy
    /// completion of `eval_samples` held-out prompts, exact-answer accuracy and (on rank 0)
    /// mean reward.
    func evaluateChat(_ inference: ShardedInference, data: PostTrainingData, stage: Recipe.Stage,
                      rewards: [(RewardFunction, Double)]) throws -> Evaluation {
        let length = stage.grpo != nil ? 48 : stage.seqLen
        let convs = data.heldOutConversations(64)
        let batches = stride(from: 0, to: convs.count, by: 16).map { start in
            let part = convs[start..<Swift.min(start + 16, convs.count)]
            var ids: [Int] = [], targets: [Int] = []
            for c in part {
                let r = PostTrainingData.sftRow(c, length: length, pad: data.format.pad)
                ids += r.inputs
                targets += r.targets
            }
            return HeldOutBatch(batch: .init(ids: ids, rows: part.count, length: length), targets: targets)
        }
        let losses = try heldOutLosses(inference, batches)
        let prompts = data.heldOutPrompts(stage.evalSamples)
        let maxNew = stage.grpo?.maxCompletionLength ?? 16
        let tokens = prompts.map { inference.fitted($0.1, maxNew: maxNew) }
        let generated = try greedyCompletions(inference, tokens, maxNew: maxNew, stop: Set(data.format.stop))
        let completions = try zip(prompts, generated).map { p, g in
            Completion(prompt: p.0.prompt, answer: p.0.answer, completion: try data.format.text(g), truncated: g.count >= maxNew)
        }
        let exact = (try? ExactAnswerReward().score(completions)) ?? []
        let n = Double(Swift.max(completions.count, 1))
        // Reward models score on the grid, every rank taking part; the other rewards on rank 0.
        var fromModels: [Double]? = nil
        for (f, w) in rewards {
            guard let model = f as? ModelReward else { continue }
            let rows = zip(tokens, generated).map { p, g in (p, g + (g.count < maxNew ? Array(data.format.stop.prefix(1)) : [])) }
            let s = try model.scoresOnEveryRank(rows, pad: data.format.pad)
            fromModels = zip(fromModels ?? [Double](repeating: 0, count: s.count), s).map { $0 + w * $1 }
        }
        var mean: Double? = nil
        if isRoot {
            var reward = fromModels ?? [Double](repeating: 0, count: completions.count)
            for (f, w) in rewards where !(f is ModelReward) {
                // An external command may fail here too: evaluation then reports the rest.
                guard let s = try? f.score(completions) else { continue }
                for i in reward.indices { reward[i] += w * s[i] }
            }
            mean = reward.reduce(0, +) / n
        }
        return Evaluation(loss: losses.reduce(0, +) / Double(Swift.max(batches.count, 1)), accuracy: exact.reduce(0, +) / n,
                          reward: mean, samples: completions.count)
    }
}
