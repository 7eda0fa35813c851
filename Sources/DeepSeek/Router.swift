import Autograd
import NN

/// The gate of a DeepSeekMoE layer (`mlp.gate.weight`, [n_routed_experts, hidden]) and, for
/// V3's `noaux_tc` selection, its per-expert bias (`mlp.gate.e_score_correction_bias`): a
/// buffer, not a parameter — no gradient reaches it; aux-loss-free balancing moves it between
/// steps (`RouterBias`).
package final class RouterGate: Module, @unchecked Sendable {
    package let weight: Tensor
    package let bias: Tensor?
    package init(experts: Int, hidden: Int, bias: Bool = false) {
        weight = parameter([experts, hidden])
        self.bias = bias ? Tensor(zeros: [experts]) : nil
    }
}

/// One layer's routing decision for N tokens.
package struct Routing {
    /// u·e_i for every token and routed expert, [N, E].
    package let logits: Tensor
    /// s = softmax (V2) or sigmoid (V3) of the logits in fp32, [N, E] (differentiable).
    package let scores: Tensor
    /// Each token's K experts sorted by id, row-major [N·K].
    package let experts: [Int]
    /// Gate weights g for those experts, [N, K] (differentiable): V2, scores renormalised
    /// when `norm_topk_prob` (and K > 1), otherwise scaled by `routed_scaling_factor`; V3, the
    /// unbiased scores, renormalised when `norm_topk_prob`, then scaled.
    package let weights: Tensor
    package let k: Int

    /// What the balance losses and token dropping weigh experts by: the softmax scores, or
    /// V3's sigmoid scores normalised over the experts of each token (s'_i = s_i / Σ_j s_j).
    package var affinities: Tensor {
        isSigmoid ? scores / scores.sum(axis: -1, keepDims: true) : scores
    }
    let isSigmoid: Bool
}

/// Expert selection as DeepSeek-V2's `MoEGate`: greedy top-K over the softmax scores, or
/// group-limited (device-limited) — first the `topk_group` groups with the best single expert
/// score, then top-K among the experts of those groups.
///
/// DeepSeek-V2's released code applies `routed_scaling_factor` only when the weights are not
/// renormalised; V3 applies it after renormalising. V3's `noaux_tc` (node-limited) selection
/// chooses by the scores plus the gate's bias — groups ranked by the sum of their two best
/// biased scores, the best `topk_group` kept, top-K inside them — while the weights stay the
/// unbiased scores.
package enum Router {
    /// `choose`: the experts used given the router's own choice (router replay); the weights
    /// are gathered from these scores either way.
    package static func route(_ x: Tensor, gate: RouterGate, config c: DeepSeekConfig, choose: (([Int]) -> [Int])? = nil) -> Routing {
        // float32 whatever the recipe's precision: a rounding must not move a token to another expert.
        let logits = x.linear(gate.weight, precision: .fp32)
        let sigmoid = c.scoringFunc == .sigmoid
        let scores = sigmoid ? logits.sigmoid() : logits.softmax()
        let own = select(scores.detached(), bias: gate.bias, config: c)
        let experts = choose?(own) ?? own
        let k = c.numExpertsPerTok
        var weights = scores.gatherLast(experts, k: k)
        if c.scalesAfterNormalising {
            if k > 1 && c.normTopkProb { weights = weights / (weights.sum(axis: -1, keepDims: true) + 1e-20) }
            if c.routedScalingFactor != 1 { weights = weights * Float(c.routedScalingFactor) }
        } else if k > 1 && c.normTopkProb {
            weights = weights / (weights.sum(axis: -1, keepDims: true) + 1e-20)
        } else if c.routedScalingFactor != 1 {
            weights = weights * Float(c.routedScalingFactor)
        }
        return Routing(logits: logits, scores: scores, experts: experts, weights: weights, k: k, isSigmoid: sigmoid)
    }

    /// Each row's K experts, sorted by id. `bias` (noaux_tc): added to the scores for choosing.
    package static func select(_ scores: Tensor, bias: Tensor? = nil, config c: DeepSeekConfig) -> [Int] {
        let e = c.nRoutedExperts, k = c.numExpertsPerTok
        let n = scores.count / e
        var chosen: [Int]
        if c.topkMethod == .noauxTC {
            chosen = nodeLimited(scores.contiguous(), bias: bias, n: n, config: c)
        } else if c.topkMethod == .groupLimitedGreedy && c.nGroup > 1 {
            let per = e / c.nGroup
            let s = scores.contiguous()
            // Best expert score of each group, then the best groups.
            let groupBest = Tensor(uninitialized: [n, c.nGroup])
            for t in 0..<n {
                for g in 0..<c.nGroup {
                    var m = -Float.infinity
                    for j in 0..<per { m = Swift.max(m, s.data[t * e + g * per + j]) }
                    groupBest.data[t * c.nGroup + g] = m
                }
            }
            let groups = groupBest.topK(c.topkGroup)
            // Experts outside the chosen groups get score 0, as the reference's masked_fill.
            let masked = Tensor(zeros: [n, e])
            for t in 0..<n {
                for gi in 0..<c.topkGroup {
                    let g = groups[t * c.topkGroup + gi]
                    for j in 0..<per { masked.data[t * e + g * per + j] = s.data[t * e + g * per + j] }
                }
            }
            chosen = masked.topK(k)
        } else {
            chosen = scores.topK(k)
        }
        for t in 0..<n { chosen[(t * k)..<((t + 1) * k)].sort() }
        return chosen
    }

    /// V3's selection: biased scores; groups by the sum of their two best; experts outside the
    /// kept groups excluded (−∞, as transformers' masked_fill), then top-K.
    static func nodeLimited(_ s: Tensor, bias: Tensor?, n: Int, config c: DeepSeekConfig) -> [Int] {
        let e = c.nRoutedExperts, groups = c.nGroup, per = e / groups
        let biased = Tensor(uninitialized: [n, e])
        let bp = bias?.contiguous()
        for t in 0..<n { for j in 0..<e { biased.data[t * e + j] = s.data[t * e + j] + (bp?.data[j] ?? 0) } }
        let groupScore = Tensor(uninitialized: [n, groups])
        for t in 0..<n {
            for g in 0..<groups {
                var best = -Float.infinity, second = -Float.infinity
                for j in 0..<per {
                    let v = biased.data[t * e + g * per + j]
                    if v > best { second = best; best = v } else if v > second { second = v }
                }
                groupScore.data[t * groups + g] = best + second
            }
        }
        let kept = groupScore.topK(c.topkGroup)
        let masked = Tensor(repeating: -.infinity, shape: [n, e])
        for t in 0..<n {
            for gi in 0..<c.topkGroup {
                let g = kept[t * c.topkGroup + gi]
                for j in 0..<per { masked.data[t * e + g * per + j] = biased.data[t * e + g * per + j] }
            }
        }
        return masked.topK(c.numExpertsPerTok)
    }
}
