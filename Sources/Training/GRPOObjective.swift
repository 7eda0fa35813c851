import Foundation
import Autograd

/// GRPO's objective (docs/design.md §10), with TRL's loss types and names.
///
/// Per token of completion i: ρ = exp(logπ_θ − logπ_old) (`importance_sampling_level: token`),
/// or one ρ_i = exp(mean over the completion's tokens of logπ_θ − logπ_old) for all its tokens
/// (`sequence`, GSPO). The policy term of the clipping types (grpo, bnpo, dr_grpo, dapo, luspo) is
/// −min(ρ·A_i, clip(ρ, 1−ε_low, 1+ε_high)·A_i); cispo's is −min(ρ, ε_high)·A_i·logπ_θ with the
/// capped ratio held constant; sapo's a soft gate −σ(τ(ρ−1))·4/τ·A_i (τ by the sign of A_i);
/// vespo's −φ(w_i)·A_i·logπ_θ with φ(w) = e^λ·w^k·e^(−λw) of the completion's whole ratio w_i,
/// held constant. With `top_entropy_quantile` q < 1 only the tokens whose entropy reaches the
/// (1 − q) quantile of the micro-batch's trained tokens keep their policy term. The KL term
/// β·(exp(ref − logπ_θ) − (ref − logπ_θ) − 1) is added on every token, and the loss types
/// differ in how the per-token sum is averaged:
/// - `grpo`, `sapo`: over each completion's tokens, then over completions;
/// - `bnpo`: over the tokens of each micro-batch, then over micro-batches;
/// - `dr_grpo`: summed, divided by completions × max_completion_length;
/// - `dapo`, `cispo`, `vespo`: summed, divided by the completion tokens of the whole generation batch;
/// - `luspo`: summed over each completion's tokens, averaged over completions.
///
/// With one update per generation (μ = 1) π_old is π_θ itself, so ρ = 1 and at β = 0 the value
/// of the `grpo` loss is Σ_i −A_i / n — zero, since advantages are centred within each group —
/// while its gradient, −Σ_i A_i ∇logπ_θ(completion i) / n, is not: the loss value says nothing
/// about learning. Log reward and KL instead (docs/grpo.md).
package struct GRPOObjective: Sendable, Equatable {
    package enum LossType: String, CaseIterable, Sendable {
        case grpo, bnpo, drGrpo = "dr_grpo", dapo, cispo, sapo, luspo, vespo
    }

    /// Whether ρ is each token's own or one per completion (GSPO).
    package enum ImportanceSampling: String, CaseIterable, Sendable { case token, sequence }

    /// What a group's advantages are divided by (`scale_rewards`, TRL's): the group's std, the
    /// whole batch's, or nothing.
    package enum RewardScaling: String, CaseIterable, Sendable { case group, batch, none }

    /// The shapes of sapo's and vespo's soft weights (TRL's names and defaults).
    package struct SoftWeights: Sendable, Equatable {
        package var sapoTemperaturePos = 1.0, sapoTemperatureNeg = 1.05
        package var vespoKPos = 2.0, vespoLambdaPos = 3.0, vespoKNeg = 3.0, vespoLambdaNeg = 2.0
        package init() {}
    }

    package var lossType: LossType
    package var beta: Double
    package var epsilonLow: Double
    package var epsilonHigh: Double
    package var maxCompletionLength: Int
    package var importanceSampling = ImportanceSampling.token
    /// The share of trained tokens, by entropy, that keep their policy term (1: all).
    package var topEntropyQuantile = 1.0
    package var soft = SoftWeights()

    package init(lossType: LossType, beta: Double, epsilonLow: Double, epsilonHigh: Double, maxCompletionLength: Int,
                 importanceSampling: ImportanceSampling = .token, topEntropyQuantile: Double = 1, soft: SoftWeights = SoftWeights()) {
        self.lossType = lossType
        self.beta = beta
        self.epsilonLow = epsilonLow
        self.epsilonHigh = epsilonHigh
        self.maxCompletionLength = maxCompletionLength
        self.importanceSampling = importanceSampling
        self.topEntropyQuantile = topEntropyQuantile
        self.soft = soft
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

    /// What a batch's loss reports besides its value (sums, so micro-batches add up).
    package struct Stats: Sendable {
        /// Σ over trained tokens of the per-token KL (and their count): the logged `kl` is the ratio.
        package var klSum = 0.0
        package var tokens = 0.0
        /// Ratios past the clip (low with A < 0 or high with A > 0; cispo: over its cap with
        /// A > 0), per trained token — per completion at the sequence level — and their count.
        package var clipped = 0.0
        package var clipCount = 0.0
        /// Σ over trained tokens of the policy's entropy (TRL's `entropy`: over `tokens`).
        package var entropySum = 0.0

        package var asArray: [Double] { [klSum, tokens, clipped, clipCount, entropySum] }
        package init() {}
        package init(_ a: [Double]) { (klSum, tokens, clipped, clipCount, entropySum) = (a[0], a[1], a[2], a[3], a[4]) }
    }

    /// The loss of `rows` completions, `logps` [rows, T] (log π_θ of each completion token,
    /// differentiable), with `old` and `ref` log-probabilities per token (nil: π_old = π_θ
    /// detached; no KL), the policy's `entropies` per token (nil: all tokens kept), `correction`
    /// weights on each token's policy term (SamplingCorrection; nil: none), `advantages` per row
    /// and `mask` per token (1 for trained tokens). The result is this batch's share of
    /// the step's loss: `totalRows` completions in the step, `microbatches` batches like this
    /// one, `totalTokens` trained tokens in the whole generation batch (dapo's normaliser).
    package func loss(_ logps: Tensor, old: [Float]?, ref: [Float]?, entropies: [Float]? = nil, correction: [Float]? = nil,
                      advantages: [Float], mask: [Float],
                      totalRows: Int, microbatches: Int, totalTokens: Double) -> (loss: Tensor, stats: Stats) {
        let rows = logps.shape[0], t = logps.shape[1], n = rows * t
        precondition(advantages.count == rows && mask.count == n && (old?.count ?? n) == n && (ref?.count ?? n) == n
                     && (entropies?.count ?? n) == n && (correction?.count ?? n) == n)
        let lp = logps.contiguousNoGrad()
        let x = Array(UnsafeBufferPointer(start: lp.data, count: n))
        let w = averageWeights(mask, rows: rows, t: t, totalRows: totalRows, microbatches: microbatches, totalTokens: totalTokens)
        let keep = entropies.map { highEntropyTokens($0, mask: mask) }
        let logRatio = (0..<n).map { k in old.map { x[k] - $0[k] } ?? 0 }
        let ratio = ratios(logRatio, mask: mask, rows: rows, t: t)
        var stats = Stats()
        var value = 0.0, grad = [Float](repeating: 0, count: n)
        for i in 0..<rows {
            let a = advantages[i], phi = lossType == .vespo ? gammaWeight(logRatio, mask: mask, row: i, t: t, advantage: a) : 0
            // Σ over the row of W·∂policy/∂ρ: at the sequence level every token's ρ moves with each token.
            var rowCoefficient: Float = 0, seq: Float = 0
            for j in 0..<t {
                let k = i * t + j
                let c = ratio[k], keep = (keep?[k] ?? 1) * (correction?[k] ?? 1)
                let term = policyTerm(ratio: c, advantage: a, logp: x[k], phi: phi)
                var token = keep * term.value, d = keep * term.dLogp
                switch importanceSampling {
                case .token: d += keep * (term.dRatio * c)
                case .sequence: rowCoefficient += Float(w[k]) * keep * term.dRatio * c
                }
                if let ref, beta != 0 {
                    let delta = ref[k] - x[k]
                    let kl = Foundation.exp(delta) - delta - 1
                    token += Float(beta) * kl
                    d += Float(beta) * (1 - Foundation.exp(delta))
                    if mask[k] != 0 { stats.klSum += Double(kl) * Double(mask[k]) }
                }
                value += w[k] * Double(token)
                grad[k] += Float(w[k]) * d
                if mask[k] != 0 {
                    stats.tokens += Double(mask[k])
                    stats.entropySum += Double(entropies?[k] ?? 0) * Double(mask[k])
                    seq += mask[k]
                    if importanceSampling == .token, isClipped(ratio: c, advantage: a) { stats.clipped += Double(mask[k]) }
                }
            }
            switch importanceSampling {
            case .token: stats.clipCount += (0..<t).reduce(0.0) { $0 + Double(mask[i * t + $1]) }
            case .sequence:
                // TRL averages a per-completion figure over all completions, empty ones too.
                stats.clipCount += 1
                if isClipped(ratio: ratio[i * t], advantage: a) { stats.clipped += 1 }
                for j in 0..<t { grad[i * t + j] += rowCoefficient * mask[i * t + j] / Swift.max(seq, 1) }
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

    /// Each token's weight in the average the loss type defines (0 for untrained tokens).
    func averageWeights(_ mask: [Float], rows: Int, t: Int, totalRows: Int, microbatches: Int, totalTokens: Double) -> [Double] {
        var w = [Double](repeating: 0, count: rows * t)
        let microTokens = mask.reduce(0.0) { $0 + Double($1) }
        for i in 0..<rows {
            let len = (0..<t).reduce(0.0) { $0 + Double(mask[i * t + $1]) }
            for j in 0..<t where mask[i * t + j] != 0 {
                let m = Double(mask[i * t + j])
                switch lossType {
                case .grpo, .sapo: w[i * t + j] = m / Swift.max(len, 1) / Double(totalRows)
                case .bnpo: w[i * t + j] = m / Swift.max(microTokens, 1) / Double(microbatches)
                case .drGrpo: w[i * t + j] = m / Double(totalRows * maxCompletionLength)
                case .dapo, .cispo, .vespo: w[i * t + j] = m / Swift.max(totalTokens, 1)
                case .luspo: w[i * t + j] = m / Double(totalRows)
                }
            }
        }
        return w
    }

    /// ρ per token: its own, or its completion's (exp of the mean log-ratio over trained tokens).
    func ratios(_ logRatio: [Float], mask: [Float], rows: Int, t: Int) -> [Float] {
        switch importanceSampling {
        case .token: return logRatio.map { Foundation.exp($0) }
        case .sequence:
            return (0..<rows).flatMap { i -> [Float] in
                var sum: Float = 0, len: Float = 0
                for j in 0..<t { sum += logRatio[i * t + j] * mask[i * t + j]; len += mask[i * t + j] }
                return [Float](repeating: Foundation.exp(sum / Swift.max(len, 1)), count: t)
            }
        }
    }

    /// A token's policy term and its derivatives: through ρ (`dRatio`, times ∂ρ/∂logπ outside)
    /// and directly through logπ_θ (cispo and vespo, whose weights are held constant).
    func policyTerm(ratio c: Float, advantage a: Float, logp: Float, phi: Float) -> (value: Float, dRatio: Float, dLogp: Float) {
        switch lossType {
        case .grpo, .bnpo, .drGrpo, .dapo, .luspo:
            let lo = Float(1 - epsilonLow), hi = Float(1 + epsilonHigh)
            let l1 = c * a, l2 = Swift.min(Swift.max(c, lo), hi) * a
            // d(−min(l1, l2))/dρ with torch.minimum's even split at ties and clamp's pass-through
            // inside [lo, hi].
            let dUnclipped = -a, dClipped = c >= lo && c <= hi ? -a : 0
            let d: Float = l1 < l2 ? dUnclipped : (l1 > l2 ? dClipped : (dUnclipped + dClipped) / 2)
            return (-Swift.min(l1, l2), d, 0)
        case .cispo:
            let capped = Swift.min(c, Float(epsilonHigh))
            return (-capped * a * logp, 0, -capped * a)
        case .sapo:
            let tau = Float(a > 0 ? soft.sapoTemperaturePos : soft.sapoTemperatureNeg)
            let s = 1 / (1 + Foundation.exp(-tau * (c - 1)))
            return (-s * 4 / tau * a, -4 * a * s * (1 - s), 0)
        case .vespo:
            return (-phi * a * logp, 0, -phi * a)
        }
    }

    /// Whether ρ lies past the clip in the direction the advantage pushes it.
    func isClipped(ratio c: Float, advantage a: Float) -> Bool {
        switch lossType {
        case .grpo, .bnpo, .drGrpo, .dapo, .luspo:
            return (c < Float(1 - epsilonLow) && a < 0) || (c > Float(1 + epsilonHigh) && a > 0)
        case .cispo: return c > Float(epsilonHigh) && a > 0
        case .sapo, .vespo: return false
        }
    }

    /// vespo's φ(w) = exp(λ + k·log w − λ·w) of row `i`'s whole ratio w = exp(Σ log-ratios),
    /// the log-ratios clamped to ±20 and log w to [log 1e-8, 20], k and λ by the sign of A.
    func gammaWeight(_ logRatio: [Float], mask: [Float], row i: Int, t: Int, advantage a: Float) -> Float {
        var sum: Float = 0
        for j in 0..<t { sum += Swift.min(Swift.max(logRatio[i * t + j], -20), 20) * mask[i * t + j] }
        let logW = Swift.min(Swift.max(sum, Float(Foundation.log(1e-8))), 20)
        let k = Float(a >= 0 ? soft.vespoKPos : soft.vespoKNeg)
        let lambda = Swift.max(Float(a >= 0 ? soft.vespoLambdaPos : soft.vespoLambdaNeg), 1e-4)
        let phi = Foundation.exp(lambda + k * logW - lambda * Foundation.exp(logW))
        return phi.isFinite ? phi : 0
    }

    /// 1 for the trained tokens whose entropy reaches the (1 − q) quantile of the trained
    /// tokens' entropies (linear interpolation, as torch.quantile), 0 otherwise.
    func highEntropyTokens(_ entropies: [Float], mask: [Float]) -> [Float] {
        guard topEntropyQuantile < 1 else { return mask.map { $0 != 0 ? 1 : 0 } }
        let trained = zip(entropies, mask).filter { $0.1 != 0 }.map(\.0).sorted()
        guard !trained.isEmpty else { return [Float](repeating: 0, count: mask.count) }
        let rank = Float(1 - topEntropyQuantile) * Float(trained.count - 1)
        let below = Int(rank.rounded(.down)), above = Swift.min(below + 1, trained.count - 1)
        let f = rank - Float(below), lo = trained[below], hi = trained[above]
        // torch.lerp's two forms, each exact at its own end.
        let threshold = f < 0.5 ? lo + f * (hi - lo) : hi - (hi - lo) * (1 - f)
        return zip(entropies, mask).map { e, m in m != 0 && e * m >= threshold ? 1 : 0 }
    }
}
