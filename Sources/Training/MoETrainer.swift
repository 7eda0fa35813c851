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
        public var loss: Float
        public var ce: Float
        public var balance: Float
        public var gradNorm: Float
        public var dropFraction: Double
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

    /// `tokens` holds batch·(length+1) ids; rows predict their next token.
    public func step(rows tokens: [Int], batch b: Int, length t: Int, lr: Float) -> StepResult {
        let (ids, targets) = DenseTrainer.shift(tokens, batch: b, length: t)
        let training = MoETraining(alphas: alphas, dropping: dropping, seed: seed, step: step)
        let t0 = now()
        let out = model.forward(ids, batch: b, length: t, training: training)
        let ce = out.logits.reshape([b * t, model.config.vocabSize]).crossEntropy(targets: targets)
        let balance = out.balanceLoss
        let loss = ce + balance
        let t1 = now()
        model.zeroGrad()
        loss.backward()
        let t2 = now()
        let norm = clipGradNorm(model.parameters, maxNorm: clip)
        optimizer.update(lr: lr)
        let t3 = now()
        step += 1
        let drops = out.moe.compactMap { $0.1.drop }
        let dropped = drops.reduce(0) { $0 + $1.dropped }, total = drops.reduce(0) { $0 + $1.kept.count }
        return StepResult(loss: loss.item, ce: ce.item, balance: balance.item, gradNorm: norm,
                          dropFraction: total == 0 ? 0 : Double(dropped) / Double(total),
                          forward: t1 - t0, backward: t2 - t1, optimizer: t3 - t2)
    }
}
