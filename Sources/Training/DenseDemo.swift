import Foundation
import Autograd
import NN
import Optim
import Data

/// The first end-to-end run: a tiny dense decoder learns decimal addition from the built-in
/// corpus. It prints progress, then a summary with the unigram baseline, held-out loss and
/// held-out exact-match accuracy.
package enum DenseDemo {
    package struct Options: Sendable {
        package var config = DenseDecoderConfig(vocabSize: SyntheticArithmetic.vocabSize, hiddenSize: 128,
                                               numHiddenLayers: 4, numAttentionHeads: 4, intermediateSize: 384,
                                               maxPositionEmbeddings: 64)
        package var steps = 600
        package var batch = 16
        package var length = 64
        package var lr = 3e-3
        package var warmup = 30
        package var seed: UInt64 = 1234
        package var logEvery = 50
        package var accuracySamples = 200
        package init() {}
    }

    package struct Summary: Codable, Sendable {
        package var steps: Int
        package var parameters: Int
        package var seconds: Double
        package var tokensPerSecond: Double
        package var unigramBaselineNats: Double
        package var heldoutLossInitial: Double
        package var heldoutLossFinal: Double
        package var heldoutExactMatch: Double
        package var heldoutSamples: Int

        enum CodingKeys: String, CodingKey {
            case steps
            case parameters
            case seconds
            case tokensPerSecond = "tokens_per_s"
            case unigramBaselineNats = "unigram_baseline_nats"
            case heldoutLossInitial = "heldout_loss_initial"
            case heldoutLossFinal = "heldout_loss_final"
            case heldoutExactMatch = "heldout_exact_match"
            case heldoutSamples = "heldout_samples"
        }
    }

    package static func run(_ o: Options, log: (String) -> Void) -> Summary {
        let task = SyntheticArithmetic()
        let model = DenseDecoderLM(o.config, seed: o.seed)
        let trainer = DenseDecoderTrainer(model: model, adam: AdamW.Config(beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1))
        let schedule = LRSchedule.cosine(peak: o.lr, warmup: o.warmup, total: o.steps, minRatio: 0.1)
        let heldOut = task.heldOutTokens
        let baseline = SyntheticArithmetic.unigramEntropy(task.trainTokens(seed: o.seed, start: 0, count: 200_000).tokens)
        let evalBatch = 8
        let initial = trainer.evaluate(heldOut, batch: evalBatch, length: o.length)
        log(String(format: "dense demo: %d parameters, %d steps of %d×%d tokens; unigram baseline %.3f nats, held-out loss at init %.3f",
                   model.parameterCount, o.steps, o.batch, o.length, baseline, initial))

        var cursor: UInt64 = 0
        let start = now()
        var lossEMA = 0.0
        for step in 0..<o.steps {
            let (tokens, next) = task.trainTokens(seed: o.seed, start: cursor, count: o.batch * (o.length + 1))
            cursor = next
            let lr = Float(schedule.lr(at: step))
            let r = trainer.step(rows: tokens, batch: o.batch, length: o.length, lr: lr)
            lossEMA = step == 0 ? Double(r.loss) : 0.9 * lossEMA + 0.1 * Double(r.loss)
            if (step + 1) % o.logEvery == 0 || step + 1 == o.steps {
                let elapsed = now() - start
                let tps = Double((step + 1) * o.batch * o.length) / elapsed
                let eta = elapsed / Double(step + 1) * Double(o.steps - step - 1)
                log(String(format: "step %4d/%d  loss %.4f  grad_norm %.3f  lr %.2e  %.0f tok/s  elapsed %.0fs  eta %.0fs",
                           step + 1, o.steps, lossEMA, r.gradNorm, lr, tps, elapsed, eta))
            }
        }
        let seconds = now() - start
        let final = trainer.evaluate(heldOut, batch: evalBatch, length: o.length)

        let pairs = Array(task.heldOutPairs.prefix(o.accuracySamples))
        var correct = 0
        for (a, b) in pairs {
            let prompt = SyntheticArithmetic.prompt(a, b).utf8.map(Int.init)
            let out = trainer.greedy(prompt, stop: SyntheticArithmetic.eos, maxNew: 6)
            if String(decoding: out.map { UInt8($0) }, as: UTF8.self) == String(a + b) { correct += 1 }
        }
        return Summary(steps: o.steps, parameters: model.parameterCount, seconds: seconds,
                       tokensPerSecond: Double(o.steps * o.batch * o.length) / seconds,
                       unigramBaselineNats: baseline, heldoutLossInitial: initial, heldoutLossFinal: final,
                       heldoutExactMatch: Double(correct) / Double(max(pairs.count, 1)), heldoutSamples: pairs.count)
    }
}
