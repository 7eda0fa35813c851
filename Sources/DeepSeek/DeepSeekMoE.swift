import Autograd
import NN

/// What training adds to a MoE forward: the balance losses' α and device-level dropping.
/// Evaluation passes nil: no losses, nothing dropped.
package struct MoETraining: Sendable {
    package var alphas: BalanceLosses.Alphas
    package var dropping: TokenDropping?
    package var seed: UInt64
    package var step: Int
    /// Global index of this batch's first sequence (never-dropped sequences are chosen by it).
    package var sequenceOffset: Int
    /// The decoder layer being run (set by the model's forward).
    package var layer = 0
    /// Runs the routed experts somewhere else (expert parallelism); nil: here, `Tensor.expertFFN`.
    package var executor: ExpertExecutor?

    package init(alphas: BalanceLosses.Alphas, dropping: TokenDropping?, seed: UInt64, step: Int, sequenceOffset: Int = 0) {
        self.alphas = alphas
        self.dropping = dropping
        self.seed = seed
        self.step = step
        self.sequenceOffset = sequenceOffset
    }
}

/// Computes Σ over each token's kept assignments of w · SwiGLU_e(x) — the contract of
/// `Tensor.expertFFN` — possibly on other ranks. `x` [N, D] (N = B·T tokens of one micro-batch),
/// `weights` [N·K], `assignments[e]` the (token, slot) pairs of expert e in token order.
/// `training` is nil in evaluation and decoding (no gradients, nothing dropped); `layer` is the
/// decoder layer. `alongside`: work that does not need the routed experts' result (the shared
/// experts), run while the tokens travel.
package protocol ExpertExecutor: AnyObject, Sendable {
    func run(_ x: Tensor, weights: Tensor, experts: StackedExperts, assignments: [[(token: Int, slot: Int)]],
             length: Int, plan: TokenDropping.Plan?, training: MoETraining?, layer: Int, alongside: (() -> Void)?) -> Tensor
}

/// What one MoE layer reports for a batch.
package struct MoELayerReport {
    package let routing: Routing
    package let losses: BalanceLosses?
    package let drop: TokenDropping.Plan?
    /// Fraction of the batch's assignments routed to each expert (before dropping).
    package let expertLoad: [Double]
    /// The batch's assignments per expert (before dropping): what aux-loss-free balancing counts.
    package let expertCounts: [Int]
}

/// DeepSeekMoE (DeepSeek-V2 §2.2): shared experts every token passes through, plus fine-grained
/// routed experts of which each token uses K. Output = Σ shared FFN(h) + Σ g_i FFN_i(h) (the
/// residual is added by the decoder layer). Each routed expert runs one GEMM chain over the
/// tokens routed to it, gathered in global token order (`Tensor.expertFFN`).
package final class DeepSeekMoE: Module, @unchecked Sendable {
    package let gate: RouterGate
    package let experts: StackedExperts
    package let shared_experts: SwiGLU?
    let config: DeepSeekConfig

    package init(_ c: DeepSeekConfig) {
        config = c
        gate = RouterGate(experts: c.nRoutedExperts, hidden: c.hiddenSize, bias: c.topkMethod == .noauxTC)
        experts = StackedExperts(experts: c.nRoutedExperts, hidden: c.hiddenSize, intermediate: c.moeIntermediateSize)
        // DeepSeek's code: one MLP of width moe_intermediate_size × n_shared_experts.
        shared_experts = c.nSharedExperts > 0 ? SwiGLU(dim: c.hiddenSize, hidden: c.moeIntermediateSize * c.nSharedExperts) : nil
    }

    /// x [B, T, D] → ([B, T, D], report). `executor` runs the routed experts of an evaluation
    /// or decode elsewhere (a training step's comes in `training`); `layer` names this layer to it.
    /// `routes`: a rollout's recorded experts, compared with this forward's and with replay used
    /// instead — by the balance losses, token dropping and the expert counts too (RouteReplay).
    package func callAsFunction(_ x: Tensor, training: MoETraining?, executor: ExpertExecutor? = nil, layer: Int = 0,
                                routes: RouteReplay? = nil) -> (Tensor, MoELayerReport) {
        let b = x.shape[0], t = x.shape[1], dim = x.shape[2], n = b * t
        let c = config, k = c.numExpertsPerTok, e = c.nRoutedExperts
        let flat = x.reshape([n, dim])
        let routing = Router.route(flat, gate: gate, config: c, choose: routes.map { r in { r.choose(layer: layer, own: $0) } })

        var losses: BalanceLosses? = nil
        var plan: TokenDropping.Plan? = nil
        if let training {
            let m = c.topkMethod == .greedy ? Swift.min(k, c.nGroup) : c.topkGroup
            let affinities = routing.affinities
            losses = BalanceLosses.compute(scores: affinities, experts: routing.experts, batch: b, length: t, k: k,
                                           devices: c.nGroup, devicesPerToken: m, alphas: training.alphas)
            if let dropping = training.dropping {
                let sequences = dropping.neverDropped(seed: training.seed, step: training.step, first: training.sequenceOffset, count: b)
                let protected = (0..<n).map { sequences[$0 / t] }
                plan = dropping.plan(affinity: affinities.values, experts: routing.experts, k: k, numExperts: e,
                                     devices: c.nGroup, protected: protected)
            }
        }

        // Each expert's kept assignments, in global token order.
        var assignments = [[(token: Int, slot: Int)]](repeating: [], count: e)
        var counts = [Int](repeating: 0, count: e)
        for slot in 0..<(n * k) {
            let ex = routing.experts[slot]
            counts[ex] += 1
            if let plan, !plan.kept[slot] { continue }
            assignments[ex].append((slot / k, slot))
        }
        let w = routing.weights.reshape([n * k])
        var out: Tensor
        if let executor = training?.executor ?? executor {
            // The shared experts run while the tokens travel to the routed ones. Their tape nodes
            // come first then, which changes no bit: `flat`'s gradient is still (shared + routed)
            // + router, and a + b = b + a.
            var common: Tensor? = nil
            out = executor.run(flat, weights: w, experts: experts, assignments: assignments, length: t, plan: plan,
                               training: training, layer: training?.layer ?? layer,
                               alongside: shared_experts.map { shared in { common = shared(flat) } })
            if let shared_experts { out = out + (common ?? shared_experts(flat)) }
        } else if let shared_experts, training == nil, n <= Tensor.fewRows, !GradMode.isEnabled, SpinningWorker.available,
                  !Profiler.isEnabled {
            // Decoding: the routed experts on one core while the shared ones run on the other,
            // each streaming its own weights (one after the other, each split over both cores,
            // they paid a hand-over per projection). A projection's result does not depend on
            // the thread that runs it. (Not while profiling: its tables are one thread's.)
            var routed: Tensor? = nil, common: Tensor? = nil
            SpinningWorker.run(2) { i in
                withNoGrad {
                    if i == 0 { routed = Tensor.expertFFN(flat, weights: w, experts: experts, assignments: assignments) }
                    else { common = shared_experts(flat) }
                }
            }
            out = routed! + common!
        } else {
            out = Tensor.expertFFN(flat, weights: w, experts: experts, assignments: assignments)
            if let shared_experts { out = out + shared_experts(flat) }
        }
        let report = MoELayerReport(routing: routing, losses: losses, drop: plan,
                                    expertLoad: counts.map { Double($0) / Double(n * k) }, expertCounts: counts)
        return (out.reshape([b, t, dim]), report)
    }
}
