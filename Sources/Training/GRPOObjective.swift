import Foundation
import Autograd

/// GRPO's objective (docs/design.md §10), with TRL's loss types and names.
///
/// Per token of completion i: ρ = exp(logπ_θ − logπ_old),
/// ℓ = −min(ρ·A_i, clip(ρ, 1−ε_low, 1+ε_high)·A_i) + β·(exp(ref − logπ_θ) − (ref − logπ_θ) − 1),
/// and the loss types differ only in how ℓ is averaged:
/// - `grpo`: over each completion's tokens, then over completions;
/// - `bnpo`: over the tokens of each micro-batch, then over micro-batches;
/// - `dr_grpo`: summed, divided by completions × max_completion_length;
/// - `dapo`: summed, divided by the completion tokens of the whole generation batch.
///
/// With one update per generation (μ = 1) π_old is π_θ itself, so ρ = 1 and at β = 0 the value
/// of the `grpo` loss is Σ_i −A_i / n — zero, since advantages are centred within each group —
/// while its gradient, −Σ_i A_i ∇logπ_θ(completion i) / n, is not: the loss value says nothing
/// about learning. Log reward and KL instead (docs/grpo.md).
package struct GRPOObjective: Sendable, Equatable {
    package enum LossType: String, CaseIterable, Sendable { case grpo, bnpo, drGrpo = "dr_grpo", dapo }

    /// What a group's advantages are divided by (`scale_rewards`, TRL's): the group's std, the
    /// whole batch's, or nothing.
    package enum RewardScaling: String, CaseIterable, Sendable { case group, batch, none }

    package var lossType: LossType
    package var beta: Double
    package var epsilonLow: Double
    package var epsilonHigh: Double
    package var maxCompletionLength: Int

    package init(lossType: LossType, beta: Double, epsilonLow: Double, epsilonHigh: Double, maxCompletionLength: Int) {
        self.lossType = lossType
        self.beta = beta
        self.epsilonLow = epsilonLow
        self.epsilonHigh = epsilonHigh
        self.maxCompletionLength = maxCompletionLength
    }

    /// A_i = (r_i − mean of its group) / (std + 1e-4), std with Bessel's correction, as TRL
    /// (`scale`: `.group` as here, `.batch` with the whole batch's std, `.none` without dividing).
    /// Also which groups have zero spread (no signal).
    package static func advantages(_ rewards: [Double], groupSize g: Int, scale: RewardScaling = .group) -> (advantages: [Double], zeroStd: [Bool]) {
        precondition(rewards.count % g == 0)
        func std(_ xs: ArraySlice<Double>) -> Double {
            guard xs.count > 1 else { return 0 }
            let m = xs.reduce(0, +) / Double(xs.count)
            return (xs.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(xs.count - 1)).squareRoot()
        }
        let batchStd = std(rewards[...])
        var adv = [Double](repeating: 0, count: rewards.count), zero: [Bool] = []
        for start in stride(from: 0, to: rewards.count, by: g) {
            let group = rewards[start..<(start + g)]
            let mean = group.reduce(0, +) / Double(g), s = std(group)
            zero.append(abs(s) < 1e-8)
            let denom: Double
            switch scale {
            case .none: denom = 1
            case .batch: denom = batchStd + 1e-4
            case .group: denom = s + 1e-4
            }
            for i in start..<(start + g) { adv[i] = (rewards[i] - mean) / denom }
        }
        return (adv, zero)
    }

    /// What a batch's loss reports besides its value.
    package struct Stats: Sendable {
        /// Σ over trained tokens of the per-token KL (and their count): the logged `kl` is the ratio.
        package var klSum = 0.0
        package var tokens = 0.0
        /// Trained tokens whose ratio was clipped (low with A < 0, or high with A > 0).
        package var clipped = 0.0
    }

    /// The loss of `rows` completions, `logps` [rows, T] (log π_θ of each completion token,
    /// differentiable), with `old` and `ref` log-probabilities per token (nil: π_old = π_θ
    /// detached; no KL), `advantages` per row and `mask` per token (1 for trained tokens).
    /// The result is this batch's share of the step's loss: `totalRows` completions in the
    /// step, `microbatches` batches like this one, `totalTokens` trained tokens in the whole
    /// generation batch (dapo's normaliser).
    package func loss(_ logps: Tensor, old: [Float]?, ref: [Float]?, advantages: [Float], mask: [Float],
                     totalRows: Int, microbatches: Int, totalTokens: Double) -> (loss: Tensor, stats: Stats) {
        let rows = logps.shape[0], t = logps.shape[1], n = rows * t
        precondition(advantages.count == rows && mask.count == n && (old?.count ?? n) == n && (ref?.count ?? n) == n)
        let lp = logps.contiguousNoGrad()
        let x = Array(UnsafeBufferPointer(start: lp.data, count: n))
        // Each token's weight in the average the loss type defines.
        var w = [Double](repeating: 0, count: n)
        let microTokens = mask.reduce(0.0) { $0 + Double($1) }
        for i in 0..<rows {
            let len = (0..<t).reduce(0.0) { $0 + Double(mask[i * t + $1]) }
            for j in 0..<t where mask[i * t + j] != 0 {
                let m = Double(mask[i * t + j])
                switch lossType {
                case .grpo: w[i * t + j] = m / Swift.max(len, 1) / Double(totalRows)
                case .bnpo: w[i * t + j] = m / Swift.max(microTokens, 1) / Double(microbatches)
                case .drGrpo: w[i * t + j] = m / Double(totalRows * maxCompletionLength)
                case .dapo: w[i * t + j] = m / Swift.max(totalTokens, 1)
                }
            }
        }
        let lo = Float(1 - epsilonLow), hi = Float(1 + epsilonHigh), beta = Float(self.beta)
        var value = 0.0, grad = [Float](repeating: 0, count: n)
        var stats = Stats()
        for i in 0..<rows {
            let a = advantages[i]
            for j in 0..<t {
                let k = i * t + j
                let logp = x[k]
                let ratio = old.map { Foundation.exp(logp - $0[k]) } ?? 1
                let clipped = Swift.min(Swift.max(ratio, lo), hi)
                let l1 = ratio * a, l2 = clipped * a
                var token = -Swift.min(l1, l2)
                // d(−min(l1, l2))/dlogp, with torch.minimum's even split at ties and clamp's
                // pass-through inside [lo, hi].
                let dUnclipped = -a * ratio
                let dClipped = ratio >= lo && ratio <= hi ? -a * ratio : 0
                var d: Float = l1 < l2 ? dUnclipped : (l1 > l2 ? dClipped : (dUnclipped + dClipped) / 2)
                if let ref, beta != 0 {
                    let delta = ref[k] - logp
                    let kl = Foundation.exp(delta) - delta - 1
                    token += beta * kl
                    d += beta * (1 - Foundation.exp(delta))
                    if mask[k] != 0 { stats.klSum += Double(kl) * Double(mask[k]) }
                }
                if mask[k] != 0 {
                    stats.tokens += Double(mask[k])
                    if (ratio < lo && a < 0) || (ratio > hi && a > 0) { stats.clipped += Double(mask[k]) }
                }
                value += w[k] * Double(token)
                grad[k] = Float(w[k]) * d
            }
        }
        let out = Tensor(scalar: Float(value))
        let g = grad
        let result = Tensor.record(out, inputs: [logps], op: "grpoLoss") { gOut in
            let s = gOut.contiguousNoGrad().data[0]
            return [Tensor(g.map { $0 * s }, shape: [rows, t])]
        }
        return (result, stats)
    }
}
