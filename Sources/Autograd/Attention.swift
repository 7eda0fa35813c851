import CBLAS
import Foundation

/// Fused scaled-dot-product attention over [B, T, H, D] tensors (the layout projections
/// produce, so no permute is needed: each head is a strided matrix with leading dimension H·D).
/// The query/key head dim may differ from the value head dim (MLA: 192 vs 128).
///
/// Per (batch, head): S = scale·Q·Kᵀ, masked row softmax in place, O = P·V (causal: over the
/// lower blocks only, `CausalBlocks`). P is kept for backward: dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P ⊙ (dP − rowsum(P ⊙ dP)),
/// dQ = scale·dS·K, dK = scale·dSᵀ·Q.

extension Tensor {
    /// `q` [B, T, H, Dk], `k` [B, S, H, Dk], `v` [B, S, H, Dv] → [B, T, H, Dv]. With `causal`,
    /// query i (at position S − T + i) sees keys 0...S − T + i, so a cached decode step works too.
    /// `segments` (B·T ids, with S = T and `causal`) packs several sequences into a row: a query
    /// sees only the earlier keys of its own segment (segments are contiguous runs).
    package static func attention(q: Tensor, k: Tensor, v: Tensor, scale: Float, causal: Bool, segments: [Int]? = nil) -> Tensor {
        guard q.rank == 4, k.rank == 4, v.rank == 4,
              q.shape[0] == k.shape[0], k.shape[0] == v.shape[0],
              q.shape[2] == k.shape[2], k.shape[2] == v.shape[2],
              q.shape[3] == k.shape[3], k.shape[1] == v.shape[1] else {
            shapeFailure("attention", "q \(q.shape), k \(k.shape), v \(v.shape) do not fit [B,T,H,Dk], [B,S,H,Dk], [B,S,H,Dv]")
        }
        let b = q.shape[0], t = q.shape[1], h = q.shape[2], dk = q.shape[3]
        let s = k.shape[1], dv = v.shape[3]
        guard !causal || s >= t else { shapeFailure("attention", "causal attention with \(t) queries but only \(s) keys") }
        let qc = q.contiguousNoGrad(), kc = k.contiguousNoGrad(), vc = v.contiguousNoGrad()
        let out = Tensor(uninitialized: [b, t, h, dv])
        let probs = Storage(uninitialized: b * h * t * s)
        let qp = qc.data, kp = kc.data, vp = vc.data, op = out.data, pp = probs.data
        let ldq = h * dk, ldv = h * dv
        let lo = firstVisibleKeys(segments, batch: b, queries: t, keys: s, causal: causal)
        let blocks = CausalBlocks(queries: t, keys: s, causal: causal)

        parallelHeads(b * h) { bh in
            let bi = bh / h, hi = bh % h
            let P = pp + bh * t * s
            let Q = qp + bi * t * ldq + hi * dk, K = kp + bi * s * ldq + hi * dk
            let V = vp + bi * s * ldv + hi * dv, O = op + bi * t * ldv + hi * dv
            blocks.scores(Q, ldq: ldq, K, ldk: ldq, dk: dk, scale: scale, P, s: s)
            maskedSoftmax(P, queries: t, keys: s, causal: causal, first: lo, offset: bi * t)
            blocks.rowsTimesKeys(P, s: s, V, ldv: ldv, dv: dv, alpha: 1, O, ldo: ldv)
        }

        return record(out, inputs: [q, k, v]) { g in
            let gc = g.contiguousNoGrad()
            let dq = Tensor(uninitialized: q.shape), dkT = Tensor(uninitialized: k.shape), dvT = Tensor(uninitialized: v.shape)
            let gp = gc.data, dqp = dq.data, dkp = dkT.data, dvp = dvT.data
            let scratch = Storage(uninitialized: Threads.count * t * s)
            parallelHeads(b * h) { bh, worker in
                let bi = bh / h, hi = bh % h
                let P = pp + bh * t * s
                let dP = scratch.data + worker * t * s
                let Q = qp + bi * t * ldq + hi * dk, K = kp + bi * s * ldq + hi * dk
                let V = vp + bi * s * ldv + hi * dv, dO = gp + bi * t * ldv + hi * dv
                let dQ = dqp + bi * t * ldq + hi * dk, dK = dkp + bi * s * ldq + hi * dk
                let dV = dvp + bi * s * ldv + hi * dv
                blocks.keysTimesRows(P, s: s, t: t, dO, ldg: ldv, width: dv, alpha: 1, dV, ldd: ldv)
                blocks.gradientScores(dO, ldo: ldv, V, ldv: ldv, dv: dv, dP, s: s)
                maskedSoftmaxBackward(P, dP, queries: t, keys: s, causal: causal, first: lo, offset: bi * t)
                blocks.rowsTimesKeys(dP, s: s, K, ldv: ldq, dv: dk, alpha: scale, dQ, ldo: ldq)
                blocks.keysTimesRows(dP, s: s, t: t, Q, ldg: ldq, width: dk, alpha: scale, dK, ldd: ldq)
            }
            withExtendedLifetime((qc, kc, vc, probs)) {}
            return [dq, dkT, dvT]
        }
    }

    /// The first key each query may see: 0, or with `segments` the start of its segment.
    static func firstVisibleKeys(_ segments: [Int]?, batch b: Int, queries t: Int, keys s: Int, causal: Bool) -> [Int] {
        var first = [Int](repeating: 0, count: b * t)
        guard let segments else { return first }
        guard causal, s == t, segments.count == b * t else {
            shapeFailure("attention", "segments need causal self-attention and \(b * t) ids, got \(segments.count)")
        }
        for bi in 0..<b {
            for i in 0..<t {
                let starts = i == 0 || segments[bi * t + i] != segments[bi * t + i - 1]
                first[bi * t + i] = starts ? i : first[bi * t + i - 1]
            }
        }
        return first
    }

    /// Softmax in place over each query's visible keys of the [t, s] scores `P`, zero elsewhere.
    /// Query i sits at position s − t + i; `first[offset + i]` is its first visible key.
    static func maskedSoftmax(_ P: UnsafeMutablePointer<Float>, queries t: Int, keys s: Int, causal: Bool, first: [Int], offset: Int) {
        for i in 0..<t {
            let row = P + i * s
            let visible = causal ? i + s - t + 1 : s, start = first[offset + i]
            softmaxRow(row + start, row + start, visible - start)
            if start > 0 { row.update(repeating: 0, count: start) }
            if visible < s { (row + visible).update(repeating: 0, count: s - visible) }
        }
    }

    /// dP → dS in place: dS = P ⊙ (dP − rowsum(P ⊙ dP)) over the visible keys, zero elsewhere.
    static func maskedSoftmaxBackward(_ P: UnsafeMutablePointer<Float>, _ dP: UnsafeMutablePointer<Float>, queries t: Int, keys s: Int,
                                      causal: Bool, first: [Int], offset: Int) {
        for i in 0..<t {
            let p = P + i * s, d = dP + i * s
            let visible = causal ? i + s - t + 1 : s, start = first[offset + i]
            let dot = vdot(p + start, d + start, visible - start)
            for j in start..<visible { d[j] = p[j] * (d[j] - dot) }
            if start > 0 { d.update(repeating: 0, count: start) }
            if visible < s { (d + visible).update(repeating: 0, count: s - visible) }
        }
    }
}

/// Causal attention needs only the scores on and below the diagonal. The queries go in blocks
/// of `size` rows: block [r0, r1) sees keys 0 ..< s − t + r1, and key block [j0, j1) is seen
/// from query row max(0, j0 − (s − t)) on. The kernels' GEMMs run over those ranges only (10/16
/// of the full products at T = 256); every term they skip is a zero of P or dS.
struct CausalBlocks {
    static let size = 64
    /// Query blocks and how many keys each sees.
    let queries: [(r0: Int, r1: Int, keys: Int)]
    /// Key blocks and the first query row that sees any of their keys.
    let keys: [(j0: Int, j1: Int, from: Int)]
    /// The products' arithmetic, taken when the forward runs so that its backward matches.
    let precision = MatmulPrecision.current

    init(queries t: Int, keys s: Int, causal: Bool) {
        guard causal else {
            queries = [(0, t, s)]
            keys = [(0, s, 0)]
            return
        }
        let n = Self.size
        queries = stride(from: 0, to: t, by: n).map { r0 in (r0, Swift.min(r0 + n, t), s - t + Swift.min(r0 + n, t)) }
        keys = stride(from: 0, to: s, by: n).map { j0 in (j0, Swift.min(j0 + n, s), Swift.max(0, j0 - (s - t))) }
    }

    /// S = scale·Q·Kᵀ into the [t, s] rows of `P` (ld s), the lower blocks only.
    func scores(_ Q: UnsafePointer<Float>, ldq: Int, _ K: UnsafePointer<Float>, ldk: Int, dk: Int, scale: Float,
                _ P: UnsafeMutablePointer<Float>, s: Int) {
        for q in queries {
            onePiece(false, true, q.r1 - q.r0, q.keys, dk, scale, Q + q.r0 * ldq, ldq, K, ldk, 0, P + q.r0 * s, s, precision)
        }
    }

    /// O = P·V (also dQ = scale·dS·K): each query block over the keys it sees.
    func rowsTimesKeys(_ P: UnsafePointer<Float>, s: Int, _ V: UnsafePointer<Float>, ldv: Int, dv: Int, alpha: Float,
                       _ O: UnsafeMutablePointer<Float>, ldo: Int) {
        for q in queries {
            onePiece(false, false, q.r1 - q.r0, dv, q.keys, alpha, P + q.r0 * s, s, V, ldv, 0, O + q.r0 * ldo, ldo, precision)
        }
    }

    /// dV = Pᵀ·dO (also dK = scale·dSᵀ·Q): each key block over the query rows that see it.
    func keysTimesRows(_ P: UnsafePointer<Float>, s: Int, t: Int, _ G: UnsafePointer<Float>, ldg: Int, width: Int, alpha: Float,
                       _ D: UnsafeMutablePointer<Float>, ldd: Int) {
        for k in keys {
            onePiece(true, false, k.j1 - k.j0, width, t - k.from, alpha, P + k.from * s + k.j0, s, G + k.from * ldg, ldg, 0,
                     D + k.j0 * ldd, ldd, precision)
        }
    }

    /// dP = dO·Vᵀ into the [t, s] rows of `dP`, the lower blocks only.
    func gradientScores(_ dO: UnsafePointer<Float>, ldo: Int, _ V: UnsafePointer<Float>, ldv: Int, dv: Int,
                        _ dP: UnsafeMutablePointer<Float>, s: Int) {
        scores(dO, ldq: ldo, V, ldk: ldv, dk: dv, scale: 1, dP, s: s)
    }
}

/// Runs one closure per (batch, head) pair. Heads are independent GEMM chains, so with
/// several threads each worker takes a fixed, contiguous share of heads and runs its GEMMs on
/// one BLAS thread; the result is the same whichever worker runs a head.
package func parallelHeads(_ n: Int, _ body: (Int, Int) -> Void) {
    Threads.blasOnOneThread()
    let workers = Swift.min(Threads.count, n)
    if workers <= 1 || ParallelRegion.active {
        for i in 0..<n { body(i, 0) }
        return
    }
    let share = { (w: Int) in for i in (n * w / workers)..<(n * (w + 1) / workers) { body(i, w) } }
    if SpinningWorker.available {
        SpinningWorker.run(workers, share)
    } else {
        ParallelRegion.run(workers, workers: workers, share)
    }
}

package func parallelHeads(_ n: Int, _ body: (Int) -> Void) { parallelHeads(n) { i, _ in body(i) } }

/// Like `parallelHeads` for tasks of unequal size (experts with different token counts): the
/// workers take tasks from a shared queue, largest `cost` first, each on one BLAS thread. A
/// task's result does not depend on which worker ran it.
package func parallelTasks(_ cost: [Int], _ body: (Int) -> Void) {
    Threads.blasOnOneThread()
    let n = cost.count
    let workers = Swift.min(Threads.count, n)
    let order = Array(0..<n).sorted { cost[$0] != cost[$1] ? cost[$0] > cost[$1] : $0 < $1 }
    if workers > 1 && SpinningWorker.available {
        SpinningWorker.run(n) { body(order[$0]) }
        return
    }
    // A decoding step's experts get a row or two each: waking a worker costs more than the work.
    if workers <= 1 || cost.reduce(0, +) <= 4 || ParallelRegion.active {
        for i in order { body(i) }
        return
    }
    ParallelRegion.run(n, workers: workers) { body(order[$0]) }
}
