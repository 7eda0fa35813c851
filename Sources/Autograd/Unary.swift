import Foundation

/// Elementwise functions, each with its derivative beside it, and the fused SwiGLU.

extension Tensor {
    /// Applies `f` elementwise and records `dfdx(x, y)` as the local derivative.
    @inline(__always)
    func unary(_ f: @escaping (Float) -> Float, derivative dfdx: @escaping (Float, Float) -> Float) -> Tensor {
        let src = contiguousNoGrad()
        let out = Tensor(uninitialized: shape)
        let x = src.data, o = out.data
        parallelFor(count, grain: 8192) { r in for i in r { o[i] = f(x[i]) } }
        return record(out, inputs: [self]) { g in
            let gc = g.contiguousNoGrad()
            let dx = Tensor(uninitialized: src.shape)
            let gp = gc.data, d = dx.data, y = out.data
            parallelFor(src.count, grain: 8192) { r in for i in r { d[i] = gp[i] * dfdx(x[i], y[i]) } }
            return [dx]
        }
    }

    package func exp() -> Tensor { unary({ Foundation.exp($0) }, derivative: { _, y in y }) }
    package func log() -> Tensor { unary({ Foundation.log($0) }, derivative: { x, _ in 1 / x }) }
    package func sqrt() -> Tensor { unary({ $0.squareRoot() }, derivative: { _, y in 0.5 / y }) }
    package func rsqrt() -> Tensor { unary({ 1 / $0.squareRoot() }, derivative: { _, y in -0.5 * y * y * y }) }
    package func square() -> Tensor { unary({ $0 * $0 }, derivative: { x, _ in 2 * x }) }
    package func sigmoid() -> Tensor { unary({ fastSigmoid($0) }, derivative: { _, y in y * (1 - y) }) }
    package func silu() -> Tensor {
        unary({ $0 * fastSigmoid($0) }, derivative: { x, _ in
            let s = fastSigmoid(x)
            return s * (1 + x * (1 - s))
        })
    }

    /// silu(gate) · up in one pass; the MLP's activation without two temporaries.
    package static func swiglu(gate: Tensor, up: Tensor) -> Tensor {
        guard gate.shape == up.shape else { shapeFailure("swiglu", "gate \(gate.shape) and up \(up.shape) differ") }
        let gs = gate.contiguousNoGrad(), us = up.contiguousNoGrad()
        let out = Tensor(uninitialized: gate.shape)
        let a = gs.data, b = us.data, o = out.data
        parallelFor(out.count, grain: 8192) { r in
            for i in r { o[i] = swigluValue(gate: a[i], up: b[i]) }
        }
        return record(out, inputs: [gate, up]) { g in
            let gc = g.contiguousNoGrad()
            let dg = Tensor(uninitialized: gate.shape), du = Tensor(uninitialized: up.shape)
            let gp = gc.data, pdg = dg.data, pdu = du.data
            parallelFor(out.count, grain: 8192) { r in
                for i in r { (pdg[i], pdu[i]) = swigluGradients(gp[i], gate: a[i], up: b[i]) }
            }
            return [dg, du]
        }
    }
}
