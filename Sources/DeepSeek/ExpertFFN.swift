import Autograd
import NN

/// The routed experts of one MoE layer, stored stacked — gate and up [E, I, D], down [E, D, I] —
/// so that one fused op runs every expert's SwiGLU on its gathered tokens. Checkpoints see
/// them one by one (`experts.E.gate_proj.weight` ...): those names are views into the stacked
/// tensors, and their gradients views into the stacked gradients.
package final class StackedExperts: Module, @unchecked Sendable {
    package let gate: Tensor, up: Tensor, down: Tensor
    let views: [(String, Tensor)]
    package let count: Int

    package init(experts e: Int, hidden d: Int, intermediate i: Int) {
        count = e
        gate = parameter([e, i, d])
        up = parameter([e, i, d])
        down = parameter([e, d, i])
        var v: [(String, Tensor)] = []
        for ex in 0..<e {
            for (name, t) in [("gate_proj", gate), ("up_proj", up), ("down_proj", down)] {
                let per = t.shape[1] * t.shape[2]
                let w = Tensor(storage: t.storage, shape: [t.shape[1], t.shape[2]], offset: ex * per, requiresGrad: true)
                v.append(("\(ex).\(name).weight", w))
            }
        }
        views = v
    }

    /// The stacked gradient buffers, zeroed, with the per-expert views' gradients looking into
    /// them: made at the first fused backward, not with the weights (a trainer whose executor
    /// computes the experts' gradients itself never needs these weight-sized buffers).
    package func ensureGradients() {
        guard gate.grad == nil else { return }
        for t in [gate, up, down] { t.grad = Tensor(zeros: t.shape) }
        for (i, (_, w)) in views.enumerated() {
            let t = [gate, up, down][i % 3], per = t.shape[1] * t.shape[2]
            w.grad = Tensor(storage: t.grad!.storage, shape: [t.shape[1], t.shape[2]], offset: (i / 3) * per)
        }
    }

    /// Drops the stacked gradient buffers (and the views into them), should a fused backward
    /// have made them: a trainer whose executor computes the experts' gradients does not use them.
    package func releaseGradients() {
        for t in [gate, up, down] { t.grad = nil }
        for (_, v) in views { v.grad = nil }
    }

    override package func customParameters(prefix: String) -> [(String, Tensor)]? {
        views.map { (prefix.isEmpty ? $0.0 : "\(prefix).\($0.0)", $0.1) }
    }
}

extension Tensor {
    /// Σ over a token's kept assignments of w · SwiGLU_e(x): `x` [N, D]; `weights` [N·K] gate
    /// weights; `assignments[e]` the (token, slot) pairs routed to expert e, in token order.
    ///
    /// Experts are independent GEMM chains, split over the threads with one BLAS thread each
    /// (as attention heads); their outputs are added into each token's result afterwards in the
    /// `ExpertSumTree` order, so the bits do not depend on scheduling or on where experts run.
    package static func expertFFN(_ x: Tensor, weights: Tensor, experts: StackedExperts,
                                 assignments: [[(token: Int, slot: Int)]]) -> Tensor {
        let n = x.shape[0], d = x.shape[1], inter = experts.gate.shape[1], e = experts.count
        guard x.rank == 2, experts.gate.shape[2] == d, assignments.count == e else {
            shapeFailure("expertFFN", "x \(x.shape) does not fit experts \(experts.gate.shape) (\(assignments.count) assignment lists)")
        }
        let xc = x.contiguousNoGrad(), wc = weights.contiguousNoGrad()
        let g = experts.gate, u = experts.up, dn = experts.down
        // Per expert: gathered inputs X [n_e, D], H = X·Gᵀ and U = X·Uᵀ [n_e, I], Y = A·Dᵀ [n_e, D].
        let sizes = assignments.map(\.count)
        var offsets = [0]
        for s in sizes { offsets.append(offsets.last! + s) }
        let rows = offsets.last!
        let xs = Storage(uninitialized: Swift.max(rows * d, 1)), hs = Storage(uninitialized: Swift.max(rows * inter, 1))
        let us = Storage(uninitialized: Swift.max(rows * inter, 1)), ys = Storage(uninitialized: Swift.max(rows * d, 1))
        let a = Storage(uninitialized: Swift.max(rows * inter, 1))
        let xp = xc.data, gp = g.data, up = u.data, dp = dn.data
        parallelTasks(sizes) { ex in
            let m = sizes[ex]
            if m == 0 { return }
            let X = xs.data + offsets[ex] * d
            for (r, asg) in assignments[ex].enumerated() { (X + r * d).update(from: xp + asg.token * d, count: d) }
            ExpertKernel.forward(m: m, dim: d, inter: inter, x: X, gate: gp + ex * inter * d, up: up + ex * inter * d,
                                 down: dp + ex * d * inter, h: hs.data + offsets[ex] * inter, u: us.data + offsets[ex] * inter,
                                 a: a.data + offsets[ex] * inter, y: ys.data + offsets[ex] * d)
        }
        let out = Tensor(zeros: [n, d])
        let wp = wc.data
        let terms = TokenTerms(assignments: assignments, tokens: n)
        terms.sum(ys.data, width: d, weights: wp, into: out.data)
        return record(out, inputs: [x, weights, g, u, dn]) { gOut in
            experts.ensureGradients()
            let gc = gOut.contiguousNoGrad()
            let go = gc.data
            let dx = Tensor(zeros: [n, d]), dw = Tensor(zeros: weights.shape)
            let dG = Tensor(uninitialized: g.shape), dU = Tensor(uninitialized: u.shape), dD = Tensor(uninitialized: dn.shape)
            let gxs = Storage(uninitialized: Swift.max(rows * d, 1))
            let scratch = Storage(uninitialized: Swift.max(rows * (d + 3 * inter), 1))
            let dwp = dw.data
            parallelTasks(sizes) { ex in
                let m = sizes[ex], per = inter * d
                if m == 0 {
                    (dG.data + ex * per).update(repeating: 0, count: per)
                    (dU.data + ex * per).update(repeating: 0, count: per)
                    (dD.data + ex * per).update(repeating: 0, count: per)
                    return
                }
                let Y = ys.data + offsets[ex] * d
                let base = scratch.data + offsets[ex] * (d + 3 * inter)
                let gY = base
                for (r, asg) in assignments[ex].enumerated() {
                    let src = go + asg.token * d, w = wp[asg.slot]
                    dwp[asg.slot] = vdot(src, Y + r * d, d)  // d(out)/d(w) = Y row
                    for j in 0..<d { gY[r * d + j] = w * src[j] }
                }
                ExpertKernel.backward(m: m, dim: d, inter: inter, x: xs.data + offsets[ex] * d, h: hs.data + offsets[ex] * inter,
                                      u: us.data + offsets[ex] * inter, a: a.data + offsets[ex] * inter, gy: gY,
                                      gate: gp + ex * per, up: up + ex * per, down: dp + ex * per, scratch: base + m * d,
                                      dGate: dG.data + ex * per, dUp: dU.data + ex * per, dDown: dD.data + ex * per,
                                      gx: gxs.data + offsets[ex] * d)
            }
            terms.sum(gxs.data, width: d, weights: nil, into: dx.data)
            withExtendedLifetime((xc, wc, gc, xs, hs, us, ys, a)) {}
            return [dx, dw, dG, dU, dD]
        }
    }
}

/// One routed expert's SwiGLU over m gathered rows, forward and backward: the GEMM chain both
/// the local fused op and the expert-parallel exchange run, so that a segment of tokens gives
/// the same bits wherever it is computed.
package enum ExpertKernel {
    /// X [m, D] → H = X·Gᵀ, U = X·Uᵀ [m, I], A = silu(H)·U, Y = A·Dᵀ [m, D].
    @inline(__always)
    package static func forward(m: Int, dim d: Int, inter: Int, x: UnsafePointer<Float>, gate: UnsafePointer<Float>,
                               up: UnsafePointer<Float>, down: UnsafePointer<Float>, h: UnsafeMutablePointer<Float>,
                               u: UnsafeMutablePointer<Float>, a: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Float>) {
        activations(m: m, dim: d, inter: inter, x: x, gate: gate, up: up, h: h, u: u, a: a)
        profiledGEMM(transA: false, transB: true, m: m, n: d, k: inter, a, lda: inter, down, ldb: inter, y, ldc: d, tokens: 0)
    }

    /// H, U and A of `forward`, without Y: what a deferred weight gradient recomputes.
    @inline(__always)
    package static func activations(m: Int, dim d: Int, inter: Int, x: UnsafePointer<Float>, gate: UnsafePointer<Float>,
                                   up: UnsafePointer<Float>, h: UnsafeMutablePointer<Float>, u: UnsafeMutablePointer<Float>,
                                   a: UnsafeMutablePointer<Float>) {
        profiledGEMM(transA: false, transB: true, m: m, n: inter, k: d, x, lda: d, gate, ldb: d, h, ldc: inter, tokens: 0)
        profiledGEMM(transA: false, transB: true, m: m, n: inter, k: d, x, lda: d, up, ldb: d, u, ldc: inter, tokens: 0)
        for j in 0..<(m * inter) { a[j] = swigluValue(gate: h[j], up: u[j]) }
    }

    /// From gY [m, D] (the output gradient already times the gate weight): the weight gradients
    /// (written, not added) and gX [m, D]. `scratch` holds 3·m·I floats.
    @inline(__always)
    package static func backward(m: Int, dim d: Int, inter: Int, x: UnsafePointer<Float>, h: UnsafePointer<Float>,
                                u: UnsafePointer<Float>, a: UnsafePointer<Float>, gy: UnsafePointer<Float>,
                                gate: UnsafePointer<Float>, up: UnsafePointer<Float>, down: UnsafePointer<Float>,
                                scratch: UnsafeMutablePointer<Float>, dGate: UnsafeMutablePointer<Float>,
                                dUp: UnsafeMutablePointer<Float>, dDown: UnsafeMutablePointer<Float>, gx: UnsafeMutablePointer<Float>) {
        hiddenGradients(m: m, dim: d, inter: inter, h: h, u: u, gy: gy, down: down, scratch: scratch)
        weightGradients(m: m, dim: d, inter: inter, x: x, a: a, gy: gy, scratch: scratch, dGate: dGate, dUp: dUp, dDown: dDown)
        inputGradient(m: m, dim: d, inter: inter, scratch: scratch, gate: gate, up: up, gx: gx)
    }

    /// gA = gY·D, then gH and gU through SwiGLU, into `scratch` (gA, gH, gU: 3·m·I floats).
    @inline(__always)
    package static func hiddenGradients(m: Int, dim d: Int, inter: Int, h: UnsafePointer<Float>, u: UnsafePointer<Float>,
                                       gy: UnsafePointer<Float>, down: UnsafePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let gA = scratch, gH = gA + m * inter, gU = gH + m * inter
        profiledGEMM(transA: false, transB: false, m: m, n: inter, k: d, gy, lda: d, down, ldb: inter, gA, ldc: inter, tokens: 0)
        for j in 0..<(m * inter) { (gH[j], gU[j]) = swigluGradients(gA[j], gate: h[j], up: u[j]) }
    }

    /// dD = gYᵀ·A, dG = gHᵀ·X, dU = gUᵀ·X (written, not added), from `hiddenGradients`' scratch.
    @inline(__always)
    package static func weightGradients(m: Int, dim d: Int, inter: Int, x: UnsafePointer<Float>, a: UnsafePointer<Float>,
                                       gy: UnsafePointer<Float>, scratch: UnsafeMutablePointer<Float>, dGate: UnsafeMutablePointer<Float>,
                                       dUp: UnsafeMutablePointer<Float>, dDown: UnsafeMutablePointer<Float>) {
        let gH = scratch + m * inter, gU = gH + m * inter
        profiledGEMM(transA: true, transB: false, m: d, n: inter, k: m, gy, lda: d, a, ldb: inter, dDown, ldc: inter, tokens: 2)
        profiledGEMM(transA: true, transB: false, m: inter, n: d, k: m, gH, lda: inter, x, ldb: d, dGate, ldc: d, tokens: 2)
        profiledGEMM(transA: true, transB: false, m: inter, n: d, k: m, gU, lda: inter, x, ldb: d, dUp, ldc: d, tokens: 2)
    }

    /// gX = gH·G + gU·U, from `hiddenGradients`' scratch.
    @inline(__always)
    package static func inputGradient(m: Int, dim d: Int, inter: Int, scratch: UnsafeMutablePointer<Float>,
                                     gate: UnsafePointer<Float>, up: UnsafePointer<Float>, gx: UnsafeMutablePointer<Float>) {
        let gH = scratch + m * inter, gU = gH + m * inter
        profiledGEMM(transA: false, transB: false, m: m, n: d, k: inter, gH, lda: inter, gate, ldb: d, gx, ldc: d, tokens: 0)
        profiledGEMM(transA: false, transB: false, m: m, n: d, k: inter, gU, lda: inter, up, ldb: d,
                     beta: 1, gx, ldc: d, tokens: 0)
    }
}
