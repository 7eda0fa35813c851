import Foundation
import Autograd
import NN
import Optim
import Parallel

/// One optimizer step of a dense LM on a token batch, timed by phase. Shared by the dense demo
/// and `bench train --model dense`, so the benchmark measures the code that trains.
package final class DenseDecoderTrainer {
    package let model: DenseDecoderLM
    package let optimizer: AdamW
    package let clip: Float

    package struct StepResult: Sendable {
        package var loss: Float
        package var gradNorm: Float
        package var forward: Double
        package var backward: Double
        package var optimizer: Double
    }

    package init(model: DenseDecoderLM, adam: AdamW.Config = AdamW.Config(), clip: Float = 1.0) {
        self.model = model
        optimizer = AdamW(model.namedParameters(), config: adam)
        self.clip = clip
    }

    /// `tokens` holds batch·(length+1) ids: each row's inputs are its first `length`, its
    /// targets the next `length` (next-token prediction).
    package func step(rows tokens: [Int], batch b: Int, length t: Int, lr: Float) -> StepResult {
        let (ids, targets) = GridTrainer.MicroBatch.nextToken(tokens, rows: b, length: t)
        let t0 = now()
        let loss = model.loss(ids, targets: targets, batch: b, length: t)
        let t1 = now()
        model.zeroGrad()
        loss.backward()
        let t2 = now()
        let norm = clipGradNorm(model.parameters, maxNorm: clip)
        optimizer.update(lr: lr)
        let t3 = now()
        return StepResult(loss: loss.item, gradNorm: norm, forward: t1 - t0, backward: t2 - t1, optimizer: t3 - t2)
    }

    /// Mean loss over `tokens` cut into rows of length+1, without gradients.
    package func evaluate(_ tokens: [Int], batch b: Int, length t: Int) -> Double {
        let per = b * (t + 1)
        var total = 0.0, n = 0
        var start = 0
        while start + per <= tokens.count {
            let (ids, targets) = GridTrainer.MicroBatch.nextToken(Array(tokens[start..<(start + per)]), rows: b, length: t)
            total += Double(withNoGrad { model.loss(ids, targets: targets, batch: b, length: t).item })
            n += 1
            start += per
        }
        return n == 0 ? .nan : total / Double(n)
    }

    /// Greedy continuation of `prompt` until `stop` or `maxNew` tokens (full forward each token:
    /// the dense demo has no KV cache; the DeepSeek model's generation uses the latent cache).
    package func greedy(_ prompt: [Int], stop: Int, maxNew: Int) -> [Int] {
        var seq = prompt
        var out: [Int] = []
        withNoGrad {
            for _ in 0..<maxNew {
                let ctx = Array(seq.suffix(model.config.maxPositionEmbeddings))
                let logits = model(ctx, batch: 1, length: ctx.count)
                let v = model.config.vocabSize
                let last = logits.reshape([ctx.count, v]).slice(axis: 0, (ctx.count - 1)..<ctx.count)
                let next = last.topK(1)[0]
                if next == stop { break }
                out.append(next)
                seq.append(next)
            }
        }
        return out
    }
}
