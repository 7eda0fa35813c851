import CBLAS

/// MLA attention over the latent cache with `kv_b_proj` absorbed (DeepSeek-V2 §2.1.2): head
/// h's queries meet the cached latents c through W_UK(h)ᵀ·q_nope, and its output leaves through
/// W_UV(h)·(Σ p·c), so no per-head key or value is ever built.
///
/// One op for decoding (a step's one query per sequence, or a prefill's several): as separate
/// tensor ops the permutes, copies and small batched GEMMs cost a large share of a batch-1
/// decoding step (docs/benchmarks.md); here a sequence's heads share their GEMMs against the
/// latents, in two groups at batch 1 (one per core). Inference only, no backward (training attends through
/// `latentAttention`); `GenerationTests` checks it against the full forward, token by token,
/// after a prefill and with two sequences at once.

extension Tensor {
    /// `q` [B, Tn, H, nope + rope] (rope applied) for the Tn positions after the first
    /// `length − Tn`; `latents` [B, capacity, kvLora] and `ropeKeys` [B, capacity, rope] hold
    /// the cache, its first `length` positions valid (these queries' own included); `kvB` is
    /// `kv_b_proj`'s weight [H·(nope + vDim), kvLora] (per head: W_UK rows, then W_UV rows).
    /// Query i sees positions 0 ... length − Tn + i. Returns [B, Tn, H·vDim], the heads'
    /// outputs side by side as `o_proj` takes them.
    package static func absorbedLatentAttention(q: Tensor, latents: Tensor, ropeKeys: Tensor, length s: Int, kvB: Tensor,
                                               nope: Int, vDim: Int, scale: Float) -> Tensor {
        let b = q.shape[0], tn = q.shape[1], h = q.shape[2], dk = q.shape[3], rope = dk - nope, kvLora = latents.shape[2]
        guard q.rank == 4, latents.rank == 3, ropeKeys.rank == 3, latents.shape[0] == b, ropeKeys.shape[0] == b,
              ropeKeys.shape[2] == rope, tn >= 1, s >= tn, s <= latents.shape[1], s <= ropeKeys.shape[1],
              kvB.shape == [h * (nope + vDim), kvLora] else {
            shapeFailure("absorbedLatentAttention", "q \(q.shape), latents \(latents.shape), ropeKeys \(ropeKeys.shape), kvB \(kvB.shape) with length \(s), nope \(nope), v \(vDim) do not fit [B,Tn,H,nope+rope], [B,cap,kvLora], [B,cap,rope], [H·(nope+v),kvLora]")
        }
        guard !(GradMode.isEnabled && q.requiresGrad) else {
            shapeFailure("absorbedLatentAttention", "is inference only (no backward): call it under withNoGrad")
        }
        let qc = q.contiguousNoGrad(), cc = latents.contiguousNoGrad(), kc = ropeKeys.contiguousNoGrad(), wc = kvB.contiguousNoGrad()
        let out = Tensor(uninitialized: [b, tn, h * vDim])
        // A task is a sequence's group of heads: their rows share one GEMM against the latents
        // (read once per group, as at V2's sizes the cache is the traffic); a single sequence's
        // heads make two groups so that batch 1 uses both cores. The grouping does not depend on
        // the thread count (a group's GEMM shape sets its bits).
        let groups = b == 1 ? Swift.min(h, 2) : 1, g = (h + groups - 1) / groups
        let workers = Swift.max(1, Swift.min(Threads.count, b * groups))
        let per = g * tn * (kvLora + s + kvLora)  // W_UKᵀ·q_nope, the scores, Σ p·c: rows (head, query)
        let scratch = Storage(uninitialized: workers * per)
        let qp = qc.data, cp = cc.data, kp = kc.data, wp = wc.data, op = out.data
        let capC = latents.shape[1] * kvLora, capK = ropeKeys.shape[1] * rope, ldq = h * dk, ldo = h * vDim
        parallelHeads(b * groups) { task, worker in
            let bi = task / groups, h0 = task % groups * g, h1 = Swift.min(h, h0 + g), rows = (h1 - h0) * tn
            if rows == 0 { return }
            let qLat = scratch.data + worker * per, scores = qLat + rows * kvLora, context = scores + rows * s
            let q0 = qp + bi * tn * ldq, c = cp + bi * capC, kPe = kp + bi * capK
            for hi in h0..<h1 {
                let r = (hi - h0) * tn
                profiledGEMM(transA: false, transB: false, m: tn, n: kvLora, k: nope, q0 + hi * dk, lda: ldq,
                             wp + hi * (nope + vDim) * kvLora, ldb: kvLora, qLat + r * kvLora, ldc: kvLora)
                if tn > 1 {
                    profiledGEMM(transA: false, transB: true, m: tn, n: s, k: rope, alpha: scale, q0 + hi * dk + nope, lda: ldq,
                                 kPe, ldb: rope, scores + r * s, ldc: s, tokens: 1)
                }
            }
            if tn == 1 {
                // One query per head: the group's rope queries sit dk apart, one GEMM for all.
                profiledGEMM(transA: false, transB: true, m: h1 - h0, n: s, k: rope, alpha: scale, q0 + h0 * dk + nope, lda: dk,
                             kPe, ldb: rope, scores, ldc: s, tokens: 1)
            }
            // The latent half of the scores for every row of the group at once.
            profiledGEMM(transA: false, transB: true, m: rows, n: s, k: kvLora, alpha: scale, qLat, lda: kvLora, c, ldb: kvLora, beta: 1,
                         scores, ldc: s, tokens: 1)
            for r in 0..<rows {
                // Row r is query r % tn, at position s − tn + r % tn: later positions get no weight.
                let row = scores + r * s, seen = s - tn + r % tn + 1
                softmaxRow(row, row, seen)
                if seen < s { (row + seen).update(repeating: 0, count: s - seen) }
            }
            profiledGEMM(transA: false, transB: false, m: rows, n: kvLora, k: s, scores, lda: s, c, ldb: kvLora, context, ldc: kvLora, tokens: 2)
            // W_UV(h) brings each head's Σ p·c to its output.
            for hi in h0..<h1 {
                profiledGEMM(transA: false, transB: true, m: tn, n: vDim, k: kvLora, context + (hi - h0) * tn * kvLora, lda: kvLora,
                             wp + (hi * (nope + vDim) + nope) * kvLora, ldb: kvLora, op + bi * tn * ldo + hi * vDim, ldc: ldo)
            }
        }
        withExtendedLifetime((qc, cc, kc, wc, scratch)) {}
        if Profiler.isEnabled && Profiler.withoutGradients { Profiler.recordForward("absorbedLatentAttention") }
        return out
    }
}
