/// SwiGLU's two input projections and its activation as one op: silu(x·Gᵀ) ⊙ (x·Uᵀ) for x
/// [..., D] and weights G, U [F, D] (the Hugging Face layout). The projections share their
/// input, so they run as one GEMM against [G; U] — [rows, 2F], wider than either, which BLAS
/// runs closer to its peak — and the backward's dX is one GEMM over 2F instead of two GEMMs and
/// an add of their results. The activation and its derivative are `swiglu`'s.

extension Tensor {
    package func swigluLinear(gate: Tensor, up: Tensor) -> Tensor {
        let x = self
        guard gate.rank == 2, gate.shape == up.shape, x.rank >= 1, x.shape[x.rank - 1] == gate.shape[1] else {
            shapeFailure("swigluLinear", "input \(x.shape) does not fit gate \(gate.shape) and up \(up.shape) ([F, D] each)")
        }
        let f = gate.shape[0], d = gate.shape[1], rows = x.count / Swift.max(d, 1), f2 = 2 * f
        let xc = x.contiguousNoGrad(), gc = gate.contiguousNoGrad(), uc = up.contiguousNoGrad()
        let hu = Storage(uninitialized: Swift.max(rows * f2, 1))  // per row: x·Gᵀ, then x·Uᵀ
        let recorded = GradMode.isEnabled && (x.requiresGrad || gate.requiresGrad || up.requiresGrad)
        // [G; U] for the one GEMM: 2·F·D floats, small next to a training step's activations.
        // Decoding's few rows instead project twice in place: copying the weights would cost
        // more than the GEMMs.
        let w = recorded || rows > Self.fewRows ? Tensor(uninitialized: [f2, d]) : nil
        if let w {
            w.data.update(from: gc.data, count: f * d)
            (w.data + f * d).update(from: uc.data, count: f * d)
        }
        if rows > 0 && f > 0 {
            if let w {
                Self.project(xc.data, rows: rows, inFeatures: d, weight: w.data, outFeatures: f2, into: hu.data, ldo: f2)
            } else {
                Self.project(xc.data, rows: rows, inFeatures: d, weight: gc.data, outFeatures: f, into: hu.data, ldo: f2)
                Self.project(xc.data, rows: rows, inFeatures: d, weight: uc.data, outFeatures: f, into: hu.data + f, ldo: f2)
            }
        }
        withExtendedLifetime((gc, uc)) {}
        let out = Tensor(uninitialized: Array(x.shape.dropLast()) + [f])
        let o = out.data, hp = hu.data
        let grain = Swift.max(1, 8192 / Swift.max(f, 1))
        parallelFor(rows, grain: grain) { r in
            for i in r {
                let h = hp + i * f2, u = h + f, oi = o + i * f
                for j in 0..<f { oi[j] = swigluValue(gate: h[j], up: u[j]) }
            }
        }
        return record(out, inputs: [x, gate, up]) { g in
            let w = w!  // made whenever the op is recorded
            let go = g.contiguousNoGrad()
            let gp = go.data
            let dhu = Storage(uninitialized: Swift.max(rows * f2, 1))  // per row: d(x·Gᵀ), then d(x·Uᵀ)
            let dp = dhu.data
            parallelFor(rows, grain: grain) { r in
                for i in r {
                    let h = hp + i * f2, u = h + f, gi = gp + i * f, dh = dp + i * f2, du = dh + f
                    for j in 0..<f { (dh[j], du[j]) = swigluGradients(gi[j], gate: h[j], up: u[j]) }
                }
            }
            var dx: Tensor? = nil, dGate: Tensor? = nil, dUp: Tensor? = nil
            if x.requiresGrad {
                let t = Tensor(uninitialized: x.shape)
                profiledGEMM(transA: false, transB: false, m: rows, n: d, k: f2, dp, lda: f2, w.data, ldb: d, t.data, ldc: d)
                dx = t
            }
            if gate.requiresGrad || up.requiresGrad {
                // d[G; U] = d(HU)ᵀ·X in one GEMM; the two gradients are its halves.
                let dw = Tensor(uninitialized: [f2, d])
                profiledGEMM(transA: true, transB: false, m: f2, n: d, k: rows, dp, lda: f2, xc.data, ldb: d, dw.data, ldc: d)
                dGate = Tensor(storage: dw.storage, shape: [f, d], offset: dw.offset)
                dUp = Tensor(storage: dw.storage, shape: [f, d], offset: dw.offset + f * d)
            }
            withExtendedLifetime((xc, hu, dhu, go)) {}
            return [dx, gate.requiresGrad ? dGate : nil, up.requiresGrad ? dUp : nil]
        }
    }
}
