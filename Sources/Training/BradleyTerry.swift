import Foundation
import Autograd

/// A reward model's pairwise loss, as TRL's RewardTrainer: for P pairs with scalar rewards
/// r_c (chosen) and r_r (rejected), −mean log σ(r_c − r_r − m) with each pair's margin m (0
/// when the data gives none), plus `centerCoefficient` · mean((r_c + r_r)²) when set (TRL's
/// `center_rewards_coefficient`: keeps the rewards centred on zero).
package struct BradleyTerry: Sendable, Equatable {
    package var centerCoefficient: Double?

    package init(centerCoefficient: Double? = nil) { self.centerCoefficient = centerCoefficient }

    /// What a batch reports besides its loss (sums over its pairs, so batches add up).
    package struct Stats: Sendable, Equatable {
        /// Pairs whose chosen reward is strictly higher.
        package var correct = 0.0
        /// Σ (r_c − r_r).
        package var marginSum = 0.0
        package var pairs = 0.0
        package var asArray: [Double] { [correct, marginSum, pairs] }
        package init() {}
        package init(_ a: [Double]) { (correct, marginSum, pairs) = (a[0], a[1], a[2]) }
    }

    /// The loss of `chosen` and `rejected` rewards [P] (differentiable), with `margins` per pair
    /// (nil: none). `share`: this batch's weight in the step (1/micro-batches).
    package func loss(chosen: Tensor, rejected: Tensor, margins: [Float]? = nil, share: Float = 1) -> (loss: Tensor, stats: Stats) {
        let p = chosen.count
        precondition(rejected.count == p && (margins?.count ?? p) == p && p > 0)
        let c = chosen.contiguousNoGrad(), r = rejected.contiguousNoGrad()
        var value = 0.0, stats = Stats()
        var gc = [Float](repeating: 0, count: p), gr = [Float](repeating: 0, count: p)
        let coef = Float(centerCoefficient ?? 0), n = Float(p)
        for i in 0..<p {
            let d = c.data[i] - r.data[i] - (margins?[i] ?? 0)
            // −log σ(d) = softplus(−d), written to stay finite for large |d|.
            value += Double(Swift.max(-d, 0) + Foundation.log1p(Foundation.exp(-abs(d))))
            let pull = 1 / (1 + Foundation.exp(d))  // σ(−d)
            let sum = c.data[i] + r.data[i]
            value += Double(coef * sum * sum)
            gc[i] = (-pull + 2 * coef * sum) / n * share
            gr[i] = (pull + 2 * coef * sum) / n * share
            if c.data[i] > r.data[i] { stats.correct += 1 }
            stats.marginSum += Double(c.data[i] - r.data[i])
        }
        stats.pairs = Double(p)
        let out = Tensor(scalar: Float(value / Double(p)) * share)
        let (dc, dr) = (gc, gr)
        let result = Tensor.record(out, inputs: [chosen, rejected], op: "bradleyTerry") { gOut in
            let s = gOut.contiguousNoGrad().data[0]
            return [Tensor(dc.map { $0 * s }, shape: chosen.shape), Tensor(dr.map { $0 * s }, shape: rejected.shape)]
        }
        return (result, stats)
    }
}
