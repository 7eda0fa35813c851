import Foundation
import Autograd
import NN
import Optim
import DeepSeek

/// One optimizer step of the DeepSeek-V2 model on a token batch: cross-entropy plus the
/// balance losses, backward, clipping, AdamW; timed by phase. The recipe-driven trainer
/// (pretraining issue) builds on this; `bench train --model small` measures it.
public final class MoETrainer {
    public let model: DeepSeekV2ForCausalLM
    public let optimizer: AdamW
    public let clip: Float
    public var alphas: BalanceLosses.Alphas
    public var dropping: TokenDropping?
    public let seed: UInt64
    public private(set) var step = 0

    public struct StepResult: Sendable {
        /// Cross-entropy plus balance losses, averaged over micro-batches.
        public var loss: Float { Float(ce + balance) }
        public var ce: Double
        public var balance: Double
        /// The three balance losses summed over MoE layers: expert, device, communication.
        public var aux: (expert: Double, device: Double, communication: Double)
        public var gradNorm: Float
        public var dropped: Int
        public var assigned: Int
        public var dropFraction: Double { assigned == 0 ? 0 : Double(dropped) / Double(assigned) }
        /// Per MoE layer, the share of the first micro-batch's assignments each expert got.
        public var expertLoad: [[Double]]
        /// False when the loss or the gradient was not finite: the update was skipped.
        public var updated: Bool
        public var forward: Double
        public var backward: Double
        public var optimizer: Double
    }

    public init(model: DeepSeekV2ForCausalLM, adam: AdamW.Config = AdamW.Config(), clip: Float = 1.0,
                alphas: BalanceLosses.Alphas? = nil, dropping: TokenDropping? = nil, seed: UInt64 = 0) {
        self.model = model
        optimizer = AdamW(model.namedParameters(), config: adam)
        self.clip = clip
        self.alphas = alphas ?? .init(expert: model.config.auxLossAlpha, device: 0, communication: 0)
        self.dropping = dropping
        self.seed = seed
    }

    /// `tokens` holds batch·(length+1) ids; rows predict their next token. One micro-batch,
    /// the trainer's own step counter (benchmarks).
    public func step(rows tokens: [Int], batch b: Int, length t: Int, lr: Float) -> StepResult {
        step(microbatches: [tokens], firstSequences: [0], rowsPerMicro: b, length: t, lr: lr, step: step)
    }

    /// One optimizer step over micro-batches (each rowsPerMicro·(length+1) ids, its first row's
    /// global sequence index in `firstSequences`): gradients summed with weight 1/count,
    /// clipping, then AdamW unless the loss or gradient is not finite. `step` keys the
    /// token-dropping RNG.
    public func step(microbatches: [[Int]], firstSequences: [Int], rowsPerMicro b: Int, length t: Int, lr: Float,
                     step globalStep: Int) -> StepResult {
        let micro = microbatches.count
        var r = StepResult(ce: 0, balance: 0, aux: (0, 0, 0), gradNorm: 0, dropped: 0, assigned: 0, expertLoad: [],
                           updated: false, forward: 0, backward: 0, optimizer: 0)
        var finite = true
        model.zeroGrad()
        for (mb, tokens) in microbatches.enumerated() {
            let (ids, targets) = DenseTrainer.shift(tokens, batch: b, length: t)
            let training = MoETraining(alphas: alphas, dropping: dropping, seed: seed, step: globalStep, sequenceOffset: firstSequences[mb])
            let t0 = now()
            let out = model.forward(ids, batch: b, length: t, training: training)
            let ce = out.logits.reshape([b * t, model.config.vocabSize]).crossEntropy(targets: targets)
            let balance = out.balanceLoss
            let loss = (ce + balance) * (1 / Float(micro))
            let t1 = now()
            if !loss.item.isFinite { finite = false }
            loss.backward()
            r.forward += t1 - t0
            r.backward += now() - t1
            r.ce += Double(ce.item) / Double(micro)
            r.balance += Double(balance.item) / Double(micro)
            for (_, report) in out.moe {
                if let l = report.losses {
                    r.aux.expert += Double(l.expert.item) / Double(micro)
                    r.aux.device += Double(l.device.item) / Double(micro)
                    r.aux.communication += Double(l.communication.item) / Double(micro)
                }
                if let d = report.drop { r.dropped += d.dropped; r.assigned += d.kept.count }
                if mb == 0 { r.expertLoad.append(report.expertLoad) }
            }
        }
        let t2 = now()
        r.gradNorm = clipGradNorm(model.parameters, maxNorm: clip)
        if finite && r.gradNorm.isFinite {
            optimizer.update(lr: lr)
            r.updated = true
        }
        r.optimizer = now() - t2
        step = globalStep + 1
        return r
    }
}
