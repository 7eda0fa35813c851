import Foundation
import Autograd
import Collectives
import DeepSeek

/// Expert parallelism: the routed experts of every MoE layer are split over the ranks of an ep
/// group in contiguous blocks (rank j holds experts j·E/ep ..< (j+1)·E/ep, that is whole router
/// groups, the "devices" of DeepSeek-V2's device-limited routing). Each rank routes its own
/// micro-batch; a token's input crosses once to each node holding any of its experts, to the
/// node's gateway (`Gateways`), which fans it out to the experts' owners there and returns one
/// sum per (token, node) — per node of `ExpertSumTree` the node's experts are tiled by — so a
/// token crosses to a node once however many of its experts and ranks are there; backward
/// mirrors it. In Megatron-Core's token-dispatcher terms, `exchange` agrees a `DispatchPlan`,
/// then `TokenDispatcher.describe` and the dispatch, `FanOut`, `computeExperts` and the
/// combine; the backward runs `combineBackward`, `fanOutGradients`, `computeExpertsBackward`
/// and `dispatchBackward`.
///
/// Why the numbers do not depend on ep: the owner runs each (source micro-batch, expert)
/// segment — the micro-batch's tokens for that expert, in token order — through the same
/// `ExpertKernel` GEMM chain as the one-process op, and a token's results are added in the
/// `ExpertSumTree` order, of which each gateway's sum is a node. The weight gradients are summed
/// over micro-batches in the canonical tree like every other gradient, not in arrival order.
///
/// Why the weight gradients wait for the end of the step: the group's micro-batches are
/// contiguous per source (source s holds leaves s·K ..< (s+1)·K of the group's block), but the
/// owner meets them j-major, every source's j-th micro-batch in the same backward; and a
/// pairwise tree over M leaves computed as they come holds log M partial sums, each as large as
/// the rank's experts. So the backward computes input gradients only and keeps each segment's
/// rows (received inputs and output gradients: rows·D floats, activation-sized); after the last
/// backward, `weightGradients` runs the tree one expert at a time over its leaves in global
/// order, recomputing the segments' activations and hidden gradients (3 of their 9 GEMMs) — the
/// same kernel calls, so the same bits — with partial sums the size of one expert. With a single
/// leaf there is no tree: the backward writes the gradients directly.
package final class ExpertParallel: ExpertExecutor, @unchecked Sendable {
    package let comm: Communicator
    let dispatcher: TokenDispatcher
    /// Which rank forwards whose rows on each node.
    let gateways: Gateways
    let experts: Int
    let local: Int
    /// Global index of the micro-batch this rank is running (set by the trainer).
    package var micro = 0
    /// Offset of each layer's local experts in the rank's flat expert-gradient vector (gate, up,
    /// down of expert 0, then expert 1, ...).
    let layerOffset: [Int: Int]
    let flatCount: Int
    /// Micro-batches in the step's expert-gradient tree (the ep group's), set by `resetStep`.
    var leaves = 1
    /// With one leaf: the flat gradient of this rank's experts (gate, up, down of each, layers
    /// at `layerOffset`), written by the backward. Kept from step to step: a fresh vector of the
    /// rank's expert size would be faulted in and cleared page by page every step
    /// (docs/benchmarks.md); the slots no segment wrote are zeroed in `weightGradients` instead.
    var direct: [Float] = []
    /// Whether this step's backward writes `direct`, and the (layer, local expert) slots it wrote.
    var directActive = false
    var written: Set<[Int]> = []
    /// Told, with one leaf, each time a layer's block of `direct` is final (a reducer sends it
    /// while the backward goes on).
    var layerGradientsReady: ((Range<Int>) -> Void)?
    /// One layer's backward of one step j: each source's micro-batch and its segments' rows.
    struct Kept {
        let layer: Int
        let experts: StackedExperts
        let micros: [Int]
        let x: Storage, gy: Storage
        /// [source][local expert]: first row in `x`/`gy` and row count.
        let start: [[Int]], rows: [[Int]]
        /// Within the cache budget: A (rows·I) and the hidden gradients (gA, gH, gU: 3·rows·I)
        /// the backward computed, so the weight gradients need no recompute.
        let a: Storage?, hidden: Storage?
    }
    var kept: [Kept] = []
    /// Bytes of A and hidden gradients a step may keep instead of recomputing them, and used.
    var cacheBudget = 0, cacheUsed = 0

    /// Per layer: the most rows one micro-batch sent this rank, and the rank's capacity per
    /// micro-batch (nil without dropping).
    package private(set) var load: [Int: (rows: Int, capacity: Int?)] = [:]
    /// Assignments of never-dropped sequences routed (counted by the sources) and received
    /// (recomputed by the owners from the token's global sequence): equal unless one was dropped.
    package private(set) var protectedRouted = 0, protectedReceived = 0
    /// The first exchange that failed on this rank (see `ExpertExchangeError`). It stays: after
    /// it the group's exchanges are out of step for good.
    package private(set) var failure: ExpertExchangeError?

    /// What rows and gradient-tree nodes travel as (`CommDType`).
    let dtype: CommDType

    /// `nodes`: each ep rank's node (`ProcessGrid.epNodeOf`), for the traffic counts.
    package init(comm: Communicator, experts: Int, layerOffset: [Int: Int], flatCount: Int, dtype: CommDType = .fp32,
                 nodes: [Int]? = nil) {
        self.comm = comm
        self.dtype = dtype
        dispatcher = TokenDispatcher(comm: comm, dtype: dtype, nodes: nodes)
        self.experts = experts
        local = experts / comm.size
        gateways = Gateways(nodeOf: nodes ?? [Int](repeating: 0, count: comm.size), local: local)
        self.layerOffset = layerOffset
        self.flatCount = flatCount
    }

    /// A new step whose expert-gradient tree has `leaves` micro-batches (ep × micro-batches per
    /// rank).
    /// `cacheBytes`: how much of the segments' activations and hidden gradients the step may
    /// keep to skip their recompute (the same values either way: same bits).
    /// Bytes of activations the backward may keep for the deferred weight gradients instead of
    /// recomputing them: a tenth of the rank's parameter bytes (at least 8 MiB), so memory still
    /// does not grow with the micro-batches.
    package static func cacheBudget(parameterFloats n: Int) -> Int { Swift.max(8 << 20, n * 4 / 10) }

    package func resetStep(leaves: Int = 1, cacheBytes: Int = 0) {
        self.leaves = leaves
        cacheBudget = cacheBytes
        cacheUsed = 0
        directActive = false
        written = []
        kept = []
        load = [:]
        protectedRouted = 0
        protectedReceived = 0
    }

    /// The step's flat expert gradient, summed over its micro-batches in the canonical tree.
    package func weightGradients() -> [Float] {
        if directActive {
            directActive = false
            // A layer's block runs from its offset to the next layer's; its local experts' slots split it evenly.
            let starts = layerOffset.values.sorted()
            direct.withUnsafeMutableBufferPointer { b in
                for (layer, base) in layerOffset {
                    let end = starts.first { $0 > base } ?? flatCount, slot = (end - base) / local
                    for j in 0..<local where !written.contains([layer, j]) {
                        (b.baseAddress! + base + j * slot).update(repeating: 0, count: slot)
                    }
                }
            }
            return direct
        }
        var out = [Float](repeating: 0, count: flatCount)
        if kept.isEmpty { return out }
        let byLayer = Dictionary(grouping: kept, by: \.layer)
        kept = []
        let tasks = byLayer.keys.sorted().flatMap { l in (0..<local).map { (layer: l, j: $0) } }
        let cost = tasks.map { t in byLayer[t.layer]!.reduce(0) { $0 + $1.rows.reduce(0) { $0 + $1[t.j] } } }
        out.withUnsafeMutableBufferPointer { op in
            let o = op.baseAddress!
            parallelTasks(cost) { i in
                let (layer, j) = tasks[i]
                expertTree(byLayer[layer]!, layer: layer, expert: j, into: o)
            }
        }
        return out
    }

    /// One local expert's gradient over the step's leaves of one layer, in global micro-batch
    /// order, as a pairwise tree whose partial sums are this expert's size.
    func expertTree(_ recs: [Kept], layer: Int, expert j: Int, into out: UnsafeMutablePointer<Float>) {
        let st = recs[0].experts, d = st.gate.shape[2], inter = st.gate.shape[1], per = inter * d
        var order: [(micro: Int, r: Int, s: Int)] = []
        for (r, k) in recs.enumerated() { for (s, m) in k.micros.enumerated() { order.append((m, r, s)) } }
        order.sort { $0.micro < $1.micro }
        let most = order.map { recs[$0.r].rows[$0.s][j] }.max() ?? 0
        let work = Storage(uninitialized: Swift.max(most * 6 * inter, 1))
        let ex = comm.rank * local + j
        let gp = st.gate.data + ex * per, upp = st.up.data + ex * per, dnp = st.down.data + ex * per
        var sum = CanonicalSum(dtype: dtype)
        for leaf in order {
            let k = recs[leaf.r], m = k.rows[leaf.s][j], at = k.start[leaf.s][j]
            var g = [Float](repeating: 0, count: 3 * per)
            if m > 0, let ka = k.a, let kh = k.hidden {
                // Kept by the backward: the weight gradients only.
                g.withUnsafeMutableBufferPointer { gb in
                    let slot = gb.baseAddress!
                    ExpertKernel.weightGradients(m: m, dim: d, inter: inter, x: k.x.data + at * d, a: ka.data + at * inter,
                                                 gy: k.gy.data + at * d, scratch: kh.data + at * 3 * inter,
                                                 dGate: slot, dUp: slot + per, dDown: slot + 2 * per)
                }
            } else if m > 0 {
                let h = work.data, u = h + m * inter, a = u + m * inter, scratch = a + m * inter
                let x = k.x.data + at * d, gy = k.gy.data + at * d
                ExpertKernel.activations(m: m, dim: d, inter: inter, x: x, gate: gp, up: upp, h: h, u: u, a: a)
                ExpertKernel.hiddenGradients(m: m, dim: d, inter: inter, h: h, u: u, gy: gy, down: dnp, scratch: scratch)
                g.withUnsafeMutableBufferPointer { gb in
                    let slot = gb.baseAddress!
                    ExpertKernel.weightGradients(m: m, dim: d, inter: inter, x: x, a: a, gy: gy, scratch: scratch,
                                                 dGate: slot, dUp: slot + per, dDown: slot + 2 * per)
                }
            }
            sum.push(g)
        }
        if let r = sum.result() { (out + layerOffset[layer]! + j * 3 * per).update(from: r, count: 3 * per) }
        withExtendedLifetime(work) {}
    }

    package var localExperts: Range<Int> { (comm.rank * local)..<((comm.rank + 1) * local) }

    /// Throws the first exchange that failed on this rank, if any: callers of the model's
    /// forward and backward call it at their next throwing point.
    package func throwIfFailed() throws {
        if let failure { throw failure }
    }

    /// Keeps the first failure (the cause; later ones follow from it).
    func record(_ error: ExpertExchangeError) {
        if failure == nil { failure = error }
    }

    package func run(_ x: Tensor, weights: Tensor, experts st: StackedExperts, assignments: [[(token: Int, slot: Int)]],
                    length t: Int, plan: TokenDropping.Plan?, training: MoETraining?, layer: Int, alongside: (() -> Void)? = nil) -> Tensor {
        // After a failure the group is out of step: no more exchanges, the caller throws soon.
        guard failure == nil else { return Tensor(zeros: x.shape) }
        do {
            return try exchange(x, weights: weights, experts: st, assignments: assignments, length: t, plan: plan,
                                training: training, layer: layer, alongside: alongside)
        } catch {
            record(ExpertExchangeError(rank: comm.rank, layer: layer, pass: .forward, cause: error))
            return Tensor(zeros: x.shape)
        }
    }

    /// Takes part in layer `layer`'s exchange with no tokens of its own: in a sharded decode, a
    /// rank whose sequences are all finished still runs its experts for the others'.
    package func serve(experts st: StackedExperts, layer: Int) {
        let d = st.gate.shape[2]
        _ = withNoGrad {
            run(Tensor(zeros: [1, d]), weights: Tensor(zeros: [1]), experts: st, assignments: [[(token: Int, slot: Int)]](repeating: [], count: experts),
                length: 1, plan: nil, training: nil, layer: layer)
        }
    }

    /// What this rank's exchanges sent since `resetTraffic` (bytes between nodes, per phase).
    package var traffic: ExchangeTraffic { dispatcher.traffic }
    package func resetTraffic() { dispatcher.resetTraffic() }

    /// One MoE layer's routed experts for a micro-batch of `x.shape[0]` tokens: plan, describe,
    /// dispatch to the gateways (running `alongside` while the rows travel), fan out to the
    /// owners, compute, fan in, sum, combine; the backward runs the same phases in reverse.
    func exchange(_ x: Tensor, weights: Tensor, experts: StackedExperts, assignments: [[(token: Int, slot: Int)]],
                  length: Int, plan dropping: TokenDropping.Plan?, training: MoETraining?, layer: Int,
                  alongside: (() -> Void)? = nil) throws -> Tensor {
        let tokens = x.shape[0], width = x.shape[1]
        let input = x.contiguousNoGrad(), routingWeights = weights.contiguousNoGrad()
        let rows = TokenRows(assignments, tokens: tokens, gateways: gateways, me: comm.rank)
        let sent = headers(rows, tokens: tokens, length: length, dropping: dropping, training: training)
        let plan = try dispatcher.timed(.headers) { try DispatchPlan.exchange(sent, over: comm, gateways: gateways) }
        dispatcher.count(.headers, [Int](repeating: 1, count: comm.size), bytesPerValue: 8 * DispatchHeader.width(localExperts: local), width: 0)
        dispatcher.countForward(tokens: tokens)
        load[layer] = (Swift.max(load[layer]?.rows ?? 0, plan.received.map(\.rows).max() ?? 0), plan.capacity)
        // Across nodes: describe, then one row per (token, node) to its gateway, the shared
        // experts running meanwhile.
        let metadata = try dispatcher.describe(rows.metadata(weights: routingWeights.data), counts: plan.sendAssignments,
                                               toCounts: plan.receiveAssignments)
        let fan = try FanOut(metadata: metadata, assignments: plan.receiveAssignments, rowsPerSource: plan.receiveTokens,
                             gateways: gateways, me: comm.rank)
        // With gradients, the backward is two tape nodes around the shared experts' (recorded
        // first, run last: it waits for the input gradients the other posted), so their transfer
        // runs behind the shared experts' backward.
        let returning = PendingReturn()
        let anchor = Tensor.record(Tensor(zeros: [1]), inputs: [x, weights], op: "expertParallelReturn") { [self] _ in
            finishBackward(returning)
        }
        let fanned = Storage(uninitialized: Swift.max(fan.rows * width, 1))
        if plan.onlyOwnRows(me: comm.rank) {
            // One node: a rank is the gateway of its own rows only; fan out straight from the input.
            copyRows(input.data, fan.receivedRow.map { rows.token[$0] }, width: width, into: fanned.data)
            alongside?()
        } else {
            let sent = Storage(uninitialized: Swift.max(rows.count * width, 1))
            rows.gather(input.data, width: width, into: sent.data)
            let dispatch = try dispatcher.move(sent, width: width, counts: plan.sendTokens, to: plan.receiveTokens, phase: .dispatch)
            alongside?()
            // Within the node: fanned out to the owners, one row per (token, expert).
            fan.fan(try dispatch.wait().data, width: width, into: fanned.data)
        }
        let inputs = try dispatcher.move(fanned, width: width, counts: fan.countsPerOwner, to: plan.receiveCounts, phase: .fanOut).wait()
        if let training, let rule = training.dropping, dropping != nil {
            let owned = try dispatcher.integers(fan.tokens, counts: fan.countsPerOwner, to: plan.receiveCounts, phase: .tokens)
            countProtected(training, rule, plan: plan, receivedTokens: owned, tokens: tokens, assignments: weights.count, length: length)
        }
        // Compute at the owners; results to the gateways, summed per tree node, to the sources.
        let activations = computeExperts(inputs, plan: plan, experts: experts, width: width)
        let results = try dispatcher.move(activations.output, width: width, counts: plan.receiveCounts, to: fan.countsPerOwner,
                                          phase: .fanIn).wait()
        let sums = Storage(uninitialized: Swift.max(fan.results.first.count - 1, 1) * width)
        fan.results.sum(results.data, width: width, weights: fan.weights, bf16: dtype == .bf16, into: sums.data, assign: true)
        let returned = try dispatcher.move(sums, width: width, counts: fan.resultsPerSource, to: rows.partialsPerGateway, phase: .combine).wait()
        let out = Tensor(zeros: [tokens, width])
        rows.results.sum(returned.data, width: width, weights: nil, bf16: dtype == .bf16, into: out.data)
        let saved = SavedExchange(layer: layer, experts: experts, plan: plan, rows: rows, fan: fan, input: input, weights: routingWeights,
                                  inputs: inputs, activations: activations, results: results)
        guard anchor.requiresGrad else {
            return Tensor.record(out, inputs: [x, weights, experts.gate, experts.up, experts.down], op: "expertParallel") { [self] gradient in
                backward(gradient, saved)
            }
        }
        return Tensor.record(out, inputs: [anchor, experts.gate, experts.up, experts.down], op: "expertParallel") { [self] gradient in
            startBackward(gradient, saved, returning)
            return [Tensor(zeros: [1]), nil, nil, nil]
        }
    }

    /// The header for each rank: the micro-batch, its sequences, the owner's capacity (its
    /// router groups' capacities), the assignments for each of its experts, and as a gateway
    /// the token rows and assignments it forwards.
    func headers(_ rows: TokenRows, tokens: Int, length: Int, dropping: TokenDropping.Plan?, training: MoETraining?) -> [DispatchHeader] {
        let groupsPerRank = (dropping?.deviceLoad.count ?? comm.size) / comm.size
        return (0..<comm.size).map { rank in
            DispatchHeader(micro: micro, firstSequence: training?.sequenceOffset ?? 0, sequences: tokens / length,
                           capacity: dropping.map { $0.capacity * groupsPerRank }, rowsPerExpert: rows.assignmentsPerExpert[rank],
                           tokens: rows.rowsPerGateway[rank], gatewayAssignments: rows.assignmentsPerGateway[rank])
        }
    }

    /// Never-dropped sequences: the sources count the assignments they routed, the owners the
    /// rows that arrived (recomputing each row's sequence from its source's header).
    func countProtected(_ training: MoETraining, _ rule: TokenDropping, plan: DispatchPlan, receivedTokens: [Int64], tokens: Int,
                        assignments: Int, length: Int) {
        let perToken = assignments / tokens
        let mine = rule.neverDropped(seed: training.seed, step: training.step, first: training.sequenceOffset, count: tokens / length)
        protectedRouted += (0..<(tokens * perToken)).filter { mine[$0 / perToken / length] }.count
        for segment in plan.segments where segment.rows > 0 {
            let header = plan.received[segment.source]
            let theirs = rule.neverDropped(seed: training.seed, step: training.step, first: header.firstSequence, count: header.sequences)
            for i in segment.start..<(segment.start + segment.rows) where theirs[Int(receivedTokens[i]) / length] { protectedReceived += 1 }
        }
    }

    /// Owner: every (source, local expert) segment through the expert kernel.
    func computeExperts(_ received: Storage, plan: DispatchPlan, experts: StackedExperts, width: Int) -> ExpertActivations {
        let intermediate = experts.gate.shape[1], perExpert = intermediate * width, first = comm.rank * local
        let out = ExpertActivations(rows: plan.rowsReceived, width: width, intermediate: intermediate)
        parallelTasks(plan.segments.map(\.rows)) { i in
            let segment = plan.segments[i], at = segment.start
            if segment.rows == 0 { return }
            let weights = (first + segment.localExpert) * perExpert
            ExpertKernel.forward(m: segment.rows, dim: width, inter: intermediate, x: received.data + at * width,
                                 gate: experts.gate.data + weights, up: experts.up.data + weights, down: experts.down.data + weights,
                                 h: out.gate.data + at * intermediate, u: out.up.data + at * intermediate,
                                 a: out.activation.data + at * intermediate, y: out.output.data + at * width)
        }
        return out
    }
}

extension ExpertParallel {
    /// The exchange's backward, its phases in reverse: the combine's gradients go to the owners,
    /// the experts run backward there, and the dispatch's gradients come back to the tokens.
    func backward(_ gradient: Tensor, _ saved: SavedExchange) -> [Tensor?] {
        let returning = PendingReturn()
        startBackward(gradient, saved, returning)
        return finishBackward(returning) + [nil, nil, nil]
    }

    /// The backward up to the input gradients' return, which it posts (`finishBackward` waits).
    func startBackward(_ gradient: Tensor, _ saved: SavedExchange, _ returning: PendingReturn) {
        guard failure == nil else { return }
        do {
            let (fanned, weightGradients) = try fanOutGradients(combineBackward(gradient, saved), saved)
            let outputGradients = try dispatcher.move(fanned, width: saved.width, counts: saved.fan.countsPerOwner,
                                                      to: saved.plan.receiveCounts, phase: .fanOut).wait()
            let inputGradients = computeExpertsBackward(outputGradients, saved)
            returning.sums = try postInputGradients(inputGradients, saved)
            returning.weightGradients = weightGradients
            returning.saved = saved
        } catch {
            record(ExpertExchangeError(rank: comm.rank, layer: saved.layer, pass: .backward, cause: error))
        }
    }

    /// The input gradients and the routing weights' gradients, once the posted sums arrive.
    func finishBackward(_ returning: PendingReturn) -> [Tensor?] {
        guard failure == nil, let saved = returning.saved, let sums = returning.sums else { return [nil, nil] }
        defer { returning.clear() }
        do {
            let (inputGradient, weightsGradient) = try dispatchBackward(sums, returning.weightGradients, saved)
            return [inputGradient, weightsGradient]
        } catch {
            record(ExpertExchangeError(rank: comm.rank, layer: saved.layer, pass: .backward, cause: error))
            return [nil, nil]
        }
    }

    /// Source: the output gradient's rows (one per (token, node), as the dispatch) on their way
    /// to the gateways, and each assignment's row among them. With every row its own (one
    /// node) and nothing to round, the gradient itself, read in place (never written: the
    /// shared experts' backward reads it too), row = token.
    func combineBackward(_ gradient: Tensor, _ saved: SavedExchange) throws -> GradientRows {
        let outputGradient = gradient.contiguousNoGrad(), width = saved.width
        if saved.plan.onlyOwnRows(me: comm.rank) && dtype == .fp32 {
            return GradientRows(data: outputGradient.data, keep: outputGradient, row: saved.fan.assignmentRow.map { saved.rows.token[$0] })
        }
        let rows = Storage(uninitialized: Swift.max(saved.rows.count * width, 1))
        saved.rows.gather(outputGradient.data, width: width, into: rows.data)
        withExtendedLifetime(outputGradient) {}
        let moved = try dispatcher.move(rows, width: width, counts: saved.plan.sendTokens, to: saved.plan.receiveTokens,
                                        phase: .combineBackward).wait()
        return GradientRows(data: moved.data, keep: moved, row: saved.fan.assignmentRow)
    }

    /// Output-gradient rows at a gateway: where they are, what keeps them alive, and each
    /// assignment's row.
    struct GradientRows {
        let data: UnsafeMutablePointer<Float>
        let keep: AnyObject
        let row: [Int]
    }

    /// Gateway: each assignment's output gradient w·g, fanned out for the owners, and its
    /// routing weight's gradient g·y (y: the expert's result row, returned in the forward).
    func fanOutGradients(_ received: GradientRows, _ saved: SavedExchange) -> (rows: Storage, weights: [Float]) {
        let fan = saved.fan, width = saved.width, outputs = saved.results.data, sourceRow = received.row
        let rows = Storage(uninitialized: Swift.max(fan.rows * width, 1))
        var weights = [Float](repeating: 0, count: fan.weights.count)
        weights.withUnsafeMutableBufferPointer { wb in
            let dw = wb.baseAddress!, into = rows.data, g = received.data
            parallelFor(fan.fannedRow.count, grain: 256) { range in
                for a in range {
                    let source = g + sourceRow[a] * width, at = fan.fannedRow[a], w = fan.weights[a], row = into + at * width
                    dw[a] = vdot(source, outputs + at * width, width)
                    for j in 0..<width { row[j] = w * source[j] }
                }
            }
        }
        withExtendedLifetime(received.keep) {}
        return (rows, weights)
    }

    /// Owner: the received rows' input gradients now; the experts' weight gradients directly
    /// with a single leaf, else from the kept rows at the end of the step (`weightGradients`).
    func computeExpertsBackward(_ outputGradients: Storage, _ saved: SavedExchange) -> Storage {
        let plan = saved.plan, base = layerOffset[saved.layer]!, intermediate = saved.experts.gate.shape[1]
        if leaves == 1 && !directActive {
            if direct.count != flatCount { direct = [Float](repeating: 0, count: flatCount) }
            directActive = true
        }
        let inputGradients = Storage(uninitialized: Swift.max(plan.rowsReceived * saved.width, 1))
        let hidden = Storage(uninitialized: Swift.max(plan.rowsReceived * 3 * intermediate, 1))
        if leaves == 1 {
            for segment in plan.segments where segment.rows > 0 { written.insert([saved.layer, segment.localExpert]) }
            direct.withUnsafeMutableBufferPointer { slots in
                expertsBackward(saved, outputGradients, hidden: hidden, into: inputGradients, weightGradients: slots.baseAddress! + base)
            }
            if let layerGradientsReady { layerGradientsReady(finishDirectBlock(layer: saved.layer)) }
        } else {
            expertsBackward(saved, outputGradients, hidden: hidden, into: inputGradients, weightGradients: nil)
            keep(saved, outputGradients, hidden: hidden)
        }
        return inputGradients
    }

    /// Zeroes the slots of `layer`'s local experts that no segment wrote this step (`direct`
    /// keeps last step's values) and returns the layer's block of the flat vector.
    func finishDirectBlock(layer: Int) -> Range<Int> {
        let base = layerOffset[layer]!, end = layerOffset.values.filter { $0 > base }.min() ?? flatCount, slot = (end - base) / local
        direct.withUnsafeMutableBufferPointer { b in
            for j in 0..<local where !written.contains([layer, j]) { (b.baseAddress! + base + j * slot).update(repeating: 0, count: slot) }
        }
        return base..<end
    }

    /// Every segment's hidden gradients (into `hidden`), its weight gradients when
    /// `weightGradients` (the layer's block of the flat vector) is given, and its input gradients.
    func expertsBackward(_ saved: SavedExchange, _ outputGradients: Storage, hidden: Storage, into inputGradients: Storage,
                         weightGradients: UnsafeMutablePointer<Float>?) {
        let experts = saved.experts, activations = saved.activations, received = saved.inputs, segments = saved.plan.segments
        let width = saved.width, intermediate = experts.gate.shape[1], perExpert = intermediate * width, first = comm.rank * local
        parallelTasks(segments.map(\.rows)) { i in
            let segment = segments[i], m = segment.rows, at = segment.start
            if m == 0 { return }
            let weights = (first + segment.localExpert) * perExpert, scratch = hidden.data + at * 3 * intermediate
            let gy = outputGradients.data + at * width
            ExpertKernel.hiddenGradients(m: m, dim: width, inter: intermediate, h: activations.gate.data + at * intermediate,
                                         u: activations.up.data + at * intermediate, gy: gy, down: experts.down.data + weights, scratch: scratch)
            if let weightGradients {
                let slot = weightGradients + segment.localExpert * 3 * perExpert
                ExpertKernel.weightGradients(m: m, dim: width, inter: intermediate, x: received.data + at * width,
                                             a: activations.activation.data + at * intermediate, gy: gy, scratch: scratch,
                                             dGate: slot, dUp: slot + perExpert, dDown: slot + 2 * perExpert)
            }
            ExpertKernel.inputGradient(m: m, dim: width, inter: intermediate, scratch: scratch, gate: experts.gate.data + weights,
                                       up: experts.up.data + weights, gx: inputGradients.data + at * width)
        }
    }

    /// With several leaves: the segments' rows for `weightGradients`, and within the cache
    /// budget their activations and hidden gradients too (which spares their recompute).
    func keep(_ saved: SavedExchange, _ outputGradients: Storage, hidden: Storage) {
        let plan = saved.plan, bytes = plan.rowsReceived * 4 * saved.experts.gate.shape[1] * 4
        let cache = cacheUsed + bytes <= cacheBudget
        if cache { cacheUsed += bytes }
        kept.append(Kept(layer: saved.layer, experts: saved.experts, micros: plan.sourceMicros, x: saved.inputs,
                         gy: outputGradients, start: plan.segmentStarts, rows: plan.segmentRows,
                         a: cache ? saved.activations.activation : nil, hidden: cache ? hidden : nil))
    }

    /// Owners: the input gradients back to the gateways; gateways: summed per (row, tree node)
    /// and posted back to the sources.
    func postInputGradients(_ inputGradients: Storage, _ saved: SavedExchange) throws -> PendingExchange<Storage> {
        let width = saved.width, fan = saved.fan
        let gathered = try dispatcher.move(inputGradients, width: width, counts: saved.plan.receiveCounts, to: fan.countsPerOwner,
                                           phase: .fanIn).wait()
        let sums = Storage(uninitialized: Swift.max(fan.results.first.count - 1, 1) * width)
        fan.results.sum(gathered.data, width: width, weights: nil, bf16: dtype == .bf16, into: sums.data, assign: true)
        return try dispatcher.move(sums, width: width, counts: fan.resultsPerSource, to: saved.rows.partialsPerGateway, phase: .dispatchBackward)
    }

    /// Source: each token's returned sums added with the tree, and the routing weights'
    /// gradients (from the gateways) put in their slots.
    func dispatchBackward(_ sums: PendingExchange<Storage>, _ weightGradients: [Float], _ saved: SavedExchange) throws -> (Tensor, Tensor) {
        let width = saved.width, plan = saved.plan
        let returned = try sums.wait()
        let gradient = Tensor(zeros: [saved.tokens, width])
        saved.rows.results.sum(returned.data, width: width, weights: nil, bf16: dtype == .bf16, into: gradient.data)
        let arrived = try dispatcher.weightGradients(weightGradients, counts: plan.receiveAssignments, to: plan.sendAssignments)
        let weightsGradient = Tensor(zeros: saved.weights.shape)
        for (a, slot) in saved.rows.slot.enumerated() { weightsGradient.data[slot] = arrived[a] }
        return (gradient, weightsGradient)
    }
}

/// What the first half of an MoE layer's backward leaves for the second: the input-gradient
/// sums on their way back, the routing weights' gradients, and the forward's record.
final class PendingReturn {
    var sums: PendingExchange<Storage>?
    var weightGradients: [Float] = []
    var saved: SavedExchange?

    func clear() {
        sums = nil
        saved = nil
        weightGradients = []
    }
}
