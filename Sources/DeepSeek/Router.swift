import Autograd
import NN

/// The gate of a DeepSeekMoE layer (`mlp.gate.weight`, [n_routed_experts, hidden]).
public final class RouterGate: Module, @unchecked Sendable {
    public let weight: Tensor
    public init(experts: Int, hidden: Int) { weight = parameter([experts, hidden]) }
}

/// One layer's routing decision for N tokens.
public struct Routing {
    /// u·e_i for every token and routed expert, [N, E].
    public let logits: Tensor
    /// softmax of the logits in fp32, [N, E] (differentiable).
    public let scores: Tensor
    /// Each token's K experts sorted by id, row-major [N·K].
    public let experts: [Int]
    /// Gate weights g for those experts, [N, K] (differentiable): scores renormalised when
    /// `norm_topk_prob` (and K > 1), otherwise scaled by `routed_scaling_factor`.
    public let weights: Tensor
    public let k: Int
}

/// Expert selection as DeepSeek-V2's `MoEGate`: greedy top-K over the softmax scores, or
/// group-limited (device-limited) — first the `topk_group` groups with the best single expert
/// score, then top-K among the experts of those groups.
///
/// DeepSeek-V2's released code applies `routed_scaling_factor` only when the weights are not
/// renormalised (V3 applies it after renormalising); this follows V2.
public enum Router {
    public static func route(_ x: Tensor, gate: RouterGate, config c: DeepSeekV2Config) -> Routing {
        let logits = x.linear(gate.weight)
        let scores = logits.softmax()
        let experts = select(scores.detached(), config: c)
        let k = c.numExpertsPerTok
        var weights = scores.gatherLast(experts, k: k)
        if k > 1 && c.normTopkProb {
            weights = weights / (weights.sum(axis: -1, keepDims: true) + 1e-20)
        } else if c.routedScalingFactor != 1 {
            weights = weights * Float(c.routedScalingFactor)
        }
        return Routing(logits: logits, scores: scores, experts: experts, weights: weights, k: k)
    }

    /// Each row's K experts, sorted by id.
    public static func select(_ scores: Tensor, config c: DeepSeekV2Config) -> [Int] {
        let e = c.nRoutedExperts, k = c.numExpertsPerTok
        let n = scores.count / e
        var chosen: [Int]
        if c.topkMethod == "group_limited_greedy" && c.nGroup > 1 {
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
}
