import Foundation
import Autograd
import Collectives
import DeepSeek

/// Expert parallelism: the routed experts of every MoE layer are split over the ranks of an ep
/// group in contiguous blocks (rank j holds experts j·E/ep ..< (j+1)·E/ep, that is whole router
/// groups, the "devices" of DeepSeek-V2's device-limited routing). Each rank routes its own
/// micro-batch; the rows for other ranks' experts travel there with one all-to-all and the
/// results come back with another; backward mirrors it.
///
/// Why the numbers do not depend on ep: the owner runs each (source micro-batch, expert)
/// segment — the micro-batch's tokens for that expert, in token order — through the same
/// `ExpertKernel` GEMM chain as the one-process op, and the source combines the results in the
/// same (expert, token) order. The weight gradients are summed over micro-batches in the
/// canonical tree like every other gradient, not in arrival order.
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

    package init(comm: Communicator, experts: Int, layerOffset: [Int: Int], flatCount: Int) {
        self.comm = comm
        self.experts = experts
        local = experts / comm.size
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
        var sum = CanonicalSum()
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

    package func run(_ x: Tensor, weights: Tensor, experts st: StackedExperts, assignments: [[(token: Int, slot: Int)]],
                    length t: Int, plan: TokenDropping.Plan?, training: MoETraining?, layer: Int) -> Tensor {
        do {
            return try exchange(x, weights: weights, experts: st, assignments: assignments, length: t, plan: plan,
                                training: training, layer: layer)
        } catch {
            FileHandle.standardError.write(Data("error: rank \(comm.rank) of the ep group, layer \(layer): \(error)\n".utf8))
            Communicator.abortJob(code: 3)
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

    /// Rows of `d` floats laid out here by `counts`/`displs` (in rows, per rank), moved to
    /// the ranks' layout `toCounts`/`toDispls`. Alone in the group what arrives is what was
    /// sent: `src` itself, no copy through MPI.
    func moveRows(_ src: Storage, width d: Int, _ counts: [Int], _ displs: [Int], to toCounts: [Int], _ toDispls: [Int]) throws -> Storage {
        guard comm.size > 1 else { return src }
        let dst = Storage(uninitialized: Swift.max(toCounts.reduce(0, +) * d, 1))
        try comm.alltoallv(UnsafePointer(src.data), sendCounts: counts.map { $0 * d }, sendDispls: displs.map { $0 * d },
                           dst.data, recvCounts: toCounts.map { $0 * d }, recvDispls: toDispls.map { $0 * d })
        return dst
    }

    func exchange(_ x: Tensor, weights: Tensor, experts st: StackedExperts, assignments: [[(token: Int, slot: Int)]],
                  length t: Int, plan: TokenDropping.Plan?, training: MoETraining?, layer: Int) throws -> Tensor {
        let n = x.shape[0], d = x.shape[1], inter = st.gate.shape[1], p = comm.size, el = local, per = inter * d
        let xc = x.contiguousNoGrad(), wc = weights.contiguousNoGrad()
        let xp = xc.data

        // Header per destination: [micro, first sequence, capacity per rank (−1: none), sequences, rows per local expert...].
        let groupsPerRank = (plan?.deviceLoad.count ?? p) / p
        var header = [Int64](repeating: 0, count: p * (4 + el))
        var sendRows = [Int](repeating: 0, count: p)
        for q in 0..<p {
            header[q * (4 + el)] = Int64(micro)
            header[q * (4 + el) + 1] = Int64(training?.sequenceOffset ?? 0)
            header[q * (4 + el) + 2] = Int64(plan.map { $0.capacity * groupsPerRank } ?? -1)
            header[q * (4 + el) + 3] = Int64(n / t)
            for j in 0..<el {
                let c = assignments[q * el + j].count
                header[q * (4 + el) + 4 + j] = Int64(c)
                sendRows[q] += c
            }
        }
        let got = try comm.alltoall(header, count: 4 + el)
        var recvRows = [Int](repeating: 0, count: p)
        var segRows = [[Int]](repeating: [Int](repeating: 0, count: el), count: p)
        for s in 0..<p {
            for j in 0..<el { segRows[s][j] = Int(got[s * (4 + el) + 4 + j]); recvRows[s] += segRows[s][j] }
        }
        let sourceMicro = (0..<p).map { Int(got[$0 * (4 + el)]) }
        let capacity = got[2] >= 0 ? Int(got[2]) : nil
        let most = recvRows.max() ?? 0
        load[layer] = (Swift.max(load[layer]?.rows ?? 0, most), capacity)

        // Rows to send, destination-major, then expert, then token; token ids alongside.
        let totalSend = sendRows.reduce(0, +), totalRecv = recvRows.reduce(0, +)
        let sendX = Storage(uninitialized: Swift.max(totalSend * d, 1))
        let rows = SendRows(assignments, tokens: n)
        var sendTok = rows.token.map { Int64($0) }
        if sendTok.isEmpty { sendTok = [0] }
        rows.gather(xp, width: d, into: sendX.data)
        let sendDispl = displacements(sendRows), recvDispl = displacements(recvRows)
        let recvX = try moveRows(sendX, width: d, sendRows, sendDispl, to: recvRows, recvDispl)
        var recvTok = p == 1 ? sendTok : [Int64](repeating: 0, count: Swift.max(totalRecv, 1))
        if p > 1 {
            try sendTok.withUnsafeBufferPointer { s in
                try recvTok.withUnsafeMutableBufferPointer { rb in
                    try comm.alltoallv(s.baseAddress!, sendCounts: sendRows, sendDispls: sendDispl,
                                       rb.baseAddress!, recvCounts: recvRows, recvDispls: recvDispl)
                }
            }
        }
        // Never-dropped sequences: the sources count what they routed, the owners what arrived.
        if let training, let dropping = training.dropping, plan != nil {
            let k = weights.count / n
            let mine = dropping.neverDropped(seed: training.seed, step: training.step, first: training.sequenceOffset, count: n / t)
            protectedRouted += (0..<(n * k)).filter { mine[$0 / k / t] }.count
            for s in 0..<p {
                let theirs = dropping.neverDropped(seed: training.seed, step: training.step, first: Int(got[s * (4 + el) + 1]),
                                                   count: Int(got[s * (4 + el) + 3]))
                for i in 0..<recvRows[s] where theirs[Int(recvTok[recvDispl[s] + i]) / t] { protectedReceived += 1 }
            }
        }

        // Owner: every (source, local expert) segment through the expert kernel.
        var segStart = [[Int]](repeating: [Int](repeating: 0, count: el), count: p)
        var segments: [(s: Int, j: Int, start: Int, rows: Int)] = []
        for s in 0..<p {
            var o = recvDispl[s]
            for j in 0..<el {
                segStart[s][j] = o
                segments.append((s, j, o, segRows[s][j]))
                o += segRows[s][j]
            }
        }
        let hs = Storage(uninitialized: Swift.max(totalRecv * inter, 1)), us = Storage(uninitialized: Swift.max(totalRecv * inter, 1))
        let asx = Storage(uninitialized: Swift.max(totalRecv * inter, 1)), ys = Storage(uninitialized: Swift.max(totalRecv * d, 1))
        let gp = st.gate.data, upp = st.up.data, dnp = st.down.data
        let first = comm.rank * el
        parallelTasks(segments.map(\.rows)) { i in
            let sg = segments[i]
            if sg.rows == 0 { return }
            let ex = first + sg.j
            ExpertKernel.forward(m: sg.rows, dim: d, inter: inter, x: recvX.data + sg.start * d, gate: gp + ex * per, up: upp + ex * per,
                                 down: dnp + ex * per, h: hs.data + sg.start * inter, u: us.data + sg.start * inter,
                                 a: asx.data + sg.start * inter, y: ys.data + sg.start * d)
        }
        // Results back to the sources, in the layout they were sent.
        let backY = try moveRows(ys, width: d, recvRows, recvDispl, to: sendRows, sendDispl)
        let out = Tensor(zeros: [n, d])
        let o = out.data, wp = wc.data
        rows.combine(backY.data, width: d, weights: wp, into: o)

        let myMicro = micro
        return Tensor.record(out, inputs: [x, weights, st.gate, st.up, st.down], op: "expertParallel") { [self] gOut in
            do {
                let gc = gOut.contiguousNoGrad()
                let go = gc.data
                let dx = Tensor(zeros: [n, d]), dw = Tensor(zeros: weights.shape)
                let dwp = dw.data
                // Source: gate-weight gradients and gY = w·gOut rows, in the send layout.
                let gY = Storage(uninitialized: Swift.max(totalSend * d, 1))
                let gyp = gY.data
                parallelFor(rows.count, grain: 256) { range in
                    for r in range {
                        let src = go + rows.token[r] * d, w = wp[rows.slot[r]], dst = gyp + r * d
                        dwp[rows.slot[r]] = vdot(src, backY.data + r * d, d)
                        for j in 0..<d { dst[j] = w * src[j] }
                    }
                }
                let gYr = try moveRows(gY, width: d, sendRows, sendDispl, to: recvRows, recvDispl)
                // Owner: input gradients now; weight gradients directly with a single leaf,
                // else from the kept rows at the end of the step (`weightGradients`).
                let base = layerOffset[layer]!
                if leaves == 1 && !directActive {
                    if direct.count != flatCount { direct = [Float](repeating: 0, count: flatCount) }
                    directActive = true
                }
                let gx = Storage(uninitialized: Swift.max(totalRecv * d, 1))
                let scratch = Storage(uninitialized: Swift.max(totalRecv * 3 * inter, 1))
                func run(_ slots: UnsafeMutablePointer<Float>?) {
                    parallelTasks(segments.map(\.rows)) { i in
                        let sg = segments[i]
                        if sg.rows == 0 { return }
                        let ex = first + sg.j, m = sg.rows, sc = scratch.data + sg.start * 3 * inter
                        ExpertKernel.hiddenGradients(m: m, dim: d, inter: inter, h: hs.data + sg.start * inter, u: us.data + sg.start * inter,
                                                     gy: gYr.data + sg.start * d, down: dnp + ex * per, scratch: sc)
                        if let slots {
                            let slot = slots + base + sg.j * 3 * per
                            ExpertKernel.weightGradients(m: m, dim: d, inter: inter, x: recvX.data + sg.start * d, a: asx.data + sg.start * inter,
                                                         gy: gYr.data + sg.start * d, scratch: sc, dGate: slot, dUp: slot + per, dDown: slot + 2 * per)
                        }
                        ExpertKernel.inputGradient(m: m, dim: d, inter: inter, scratch: sc, gate: gp + ex * per, up: upp + ex * per,
                                                   gx: gx.data + sg.start * d)
                    }
                }
                if leaves == 1 {
                    for sg in segments where sg.rows > 0 { written.insert([layer, sg.j]) }
                    direct.withUnsafeMutableBufferPointer { run($0.baseAddress!) }
                } else {
                    run(nil)
                    let bytes = totalRecv * 4 * inter * 4
                    let cache = cacheUsed + bytes <= cacheBudget
                    if cache { cacheUsed += bytes }
                    kept.append(Kept(layer: layer, experts: st, micros: sourceMicro, x: recvX, gy: gYr, start: segStart, rows: segRows,
                                     a: cache ? asx : nil, hidden: cache ? scratch : nil))
                }
                let gxBack = try moveRows(gx, width: d, recvRows, recvDispl, to: sendRows, sendDispl)
                rows.combine(gxBack.data, width: d, weights: nil, into: dx.data)
                withExtendedLifetime((xc, wc, gc, sendX, recvX, hs, us, asx, ys, myMicro)) {}
                return [dx, dw, nil, nil, nil]
            } catch {
                FileHandle.standardError.write(Data("error: rank \(self.comm.rank) of the ep group, layer \(layer) backward: \(error)\n".utf8))
                Communicator.abortJob(code: 3)
            }
        }
    }
}
