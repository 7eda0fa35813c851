import CBLAS
import Foundation

/// MLA's attention (DeepSeek-V2 §2.1) read straight from what its projections produce, so the
/// model assembles no per-head keys and splits no values: `kv` is `kv_b_proj`'s output per head
/// [k_nope | v], and the one rope key head `kPe` is shared by every head.
///
/// Each (batch, head) builds its keys [k_nope | k_pe] in a small per-worker buffer (S × Dk,
/// in cache) and runs the same GEMMs as `attention` on them — the same shapes, so the same bits
/// as `attention` on the assembled tensors — and reads V in place with its leading dimension.
/// The backward writes dk_nope and dv into one [B, S, H, nope + Dv] gradient and sums dk_pe
/// over the heads in head order (in double, as `sum` does).

extension Tensor {
    /// `q` [B, T, H, nope + rope] (rope already applied), `kv` [B, S, H, nope + Dv], `kPe`
    /// [B, S, 1, rope] (rope applied) → [B, T, H, Dv]; `causal` and `segments` as `attention`.
    package static func latentAttention(q: Tensor, kv: Tensor, kPe: Tensor, nope: Int, scale: Float, causal: Bool,
                                       segments: [Int]? = nil) -> Tensor {
        guard q.rank == 4, kv.rank == 4, kPe.rank == 4, q.shape[0] == kv.shape[0], kv.shape[0] == kPe.shape[0],
              q.shape[2] == kv.shape[2], kPe.shape[2] == 1, kv.shape[1] == kPe.shape[1],
              nope >= 0, nope <= kv.shape[3], q.shape[3] == nope + kPe.shape[3] else {
            shapeFailure("latentAttention", "q \(q.shape), kv \(kv.shape), kPe \(kPe.shape) with nope \(nope) do not fit [B,T,H,nope+rope], [B,S,H,nope+Dv], [B,S,1,rope]")
        }
        let b = q.shape[0], t = q.shape[1], h = q.shape[2], dk = q.shape[3], rope = dk - nope
        let s = kv.shape[1], dv = kv.shape[3] - nope
        guard !causal || s >= t else { shapeFailure("latentAttention", "causal attention with \(t) queries but only \(s) keys") }
        let qc = q.contiguousNoGrad(), kvc = kv.contiguousNoGrad(), pc = kPe.contiguousNoGrad()
        let out = Tensor(uninitialized: [b, t, h, dv])
        let probs = Storage(uninitialized: b * h * t * s)
        let qp = qc.data, kvp = kvc.data, pep = pc.data, op = out.data, pp = probs.data
        let ldq = h * dk, ldkv = h * (nope + dv), ldo = h * dv
        let lo = firstVisibleKeys(segments, batch: b, queries: t, keys: s, causal: causal)
        let blocks = CausalBlocks(queries: t, keys: s, causal: causal)

        /// Head (bi, hi)'s keys [S, dk] into `K`.
        func assembleKeys(_ K: UnsafeMutablePointer<Float>, _ bi: Int, _ hi: Int) {
            for j in 0..<s {
                (K + j * dk).update(from: kvp + (bi * s + j) * ldkv + hi * (nope + dv), count: nope)
                (K + j * dk + nope).update(from: pep + (bi * s + j) * rope, count: rope)
            }
        }

        let keys = Storage(uninitialized: Threads.count * s * dk)
        parallelHeads(b * h) { bh, worker in
            let bi = bh / h, hi = bh % h
            let P = pp + bh * t * s, K = keys.data + worker * s * dk
            assembleKeys(K, bi, hi)
            let Q = qp + bi * t * ldq + hi * dk
            let V = kvp + bi * s * ldkv + hi * (nope + dv) + nope, O = op + bi * t * ldo + hi * dv
            blocks.scores(Q, ldq: ldq, K, ldk: dk, dk: dk, scale: scale, P, s: s)
            maskedSoftmax(P, queries: t, keys: s, causal: causal, first: lo, offset: bi * t)
            blocks.rowsTimesKeys(P, s: s, V, ldv: ldkv, dv: dv, alpha: 1, O, ldo: ldo)
        }

        return record(out, inputs: [q, kv, kPe]) { g in
            let gc = g.contiguousNoGrad()
            let dq = Tensor(uninitialized: q.shape), dkv = Tensor(uninitialized: kv.shape)
            // Each head's dk_pe, summed over the heads afterwards in a fixed order.
            let dPeHeads = Storage(uninitialized: b * h * s * rope)
            let gp = gc.data, dqp = dq.data, dkvp = dkv.data
            let scratch = Storage(uninitialized: Threads.count * (t * s + 2 * s * dk))
            parallelHeads(b * h) { bh, worker in
                let bi = bh / h, hi = bh % h
                let P = pp + bh * t * s
                let dP = scratch.data + worker * (t * s + 2 * s * dk), K = dP + t * s, dK = K + s * dk
                assembleKeys(K, bi, hi)
                let Q = qp + bi * t * ldq + hi * dk
                let head = bi * s * ldkv + hi * (nope + dv)
                let V = kvp + head + nope, dV = dkvp + head + nope, dO = gp + bi * t * ldo + hi * dv
                let dQ = dqp + bi * t * ldq + hi * dk
                blocks.keysTimesRows(P, s: s, t: t, dO, ldg: ldo, width: dv, alpha: 1, dV, ldd: ldkv)
                blocks.gradientScores(dO, ldo: ldo, V, ldv: ldkv, dv: dv, dP, s: s)
                maskedSoftmaxBackward(P, dP, queries: t, keys: s, causal: causal, first: lo, offset: bi * t)
                blocks.rowsTimesKeys(dP, s: s, K, ldv: dk, dv: dk, alpha: scale, dQ, ldo: ldq)
                blocks.keysTimesRows(dP, s: s, t: t, Q, ldg: ldq, width: dk, alpha: scale, dK, ldd: dk)
                let pe = dPeHeads.data + bh * s * rope
                for j in 0..<s {
                    (dkvp + head + j * ldkv).update(from: dK + j * dk, count: nope)
                    (pe + j * rope).update(from: dK + j * dk + nope, count: rope)
                }
            }
            let dPe = Tensor(uninitialized: kPe.shape), dpe = dPe.data, heads = dPeHeads.data
            parallelFor(b * s, grain: Swift.max(1, 4096 / Swift.max(h * rope, 1))) { r in
                var acc = [Double](repeating: 0, count: rope)
                for row in r {
                    let bi = row / s, j = row % s
                    for k in 0..<rope { acc[k] = 0 }
                    for hi in 0..<h {
                        let src = heads + ((bi * h + hi) * s + j) * rope
                        for k in 0..<rope { acc[k] += Double(src[k]) }
                    }
                    for k in 0..<rope { dpe[row * rope + k] = Float(acc[k]) }
                }
            }
            withExtendedLifetime((qc, kvc, pc, probs, dPeHeads)) {}
            return [dq, dkv, dPe]
        }
    }
}
