import Foundation

/// Softmax and log-softmax over the last axis, max-subtracted; row sums in 16 float lanes.

extension Tensor {
    package func softmax() -> Tensor {
        let (rows, n, src) = lastAxisRows(op: "softmax")
        let out = Tensor(uninitialized: shape)
        let x = src.data, y = out.data
        parallelFor(rows, grain: Swift.max(1, 8192 / Swift.max(n, 1))) { r in
            for row in r { softmaxRow(x + row * n, y + row * n, n) }
        }
        return record(out, inputs: [self]) { g in
            // dx = y ⊙ (g − Σ g⊙y)
            let gc = g.contiguousNoGrad()
            let dx = Tensor(uninitialized: out.shape)
            let gp = gc.data, d = dx.data
            parallelFor(rows, grain: Swift.max(1, 8192 / Swift.max(n, 1))) { r in
                for row in r {
                    let b = row * n
                    let s = vdot(gp + b, y + b, n)
                    for j in 0..<n { d[b + j] = y[b + j] * (gp[b + j] - s) }
                }
            }
            return [dx]
        }
    }

    package func logSoftmax() -> Tensor {
        let (rows, n, src) = lastAxisRows(op: "logSoftmax")
        let out = Tensor(uninitialized: shape)
        let x = src.data, y = out.data
        parallelFor(rows, grain: Swift.max(1, 8192 / Swift.max(n, 1))) { r in
            for row in r {
                let b = row * n
                let lse = logSumExp(x + b, n, scratch: y + b)
                for j in 0..<n { y[b + j] = x[b + j] - lse }
            }
        }
        return record(out, inputs: [self]) { g in
            // dx = g − softmax · Σ g
            let gc = g.contiguousNoGrad()
            let dx = Tensor(uninitialized: out.shape)
            let gp = gc.data, d = dx.data
            parallelFor(rows, grain: Swift.max(1, 8192 / Swift.max(n, 1))) { r in
                for row in r {
                    let b = row * n
                    let sf = vsum(gp + b, n)
                    for j in 0..<n { d[b + j] = gp[b + j] - fastExp(y[b + j]) * sf }
                }
            }
            return [dx]
        }
    }

    /// (rows, row length, contiguous source) for ops over the last axis.
    func lastAxisRows(op: String) -> (Int, Int, Tensor) {
        guard rank >= 1 else { shapeFailure(op, "needs at least one axis, got a scalar") }
        let n = shape[rank - 1]
        return (n == 0 ? 0 : count / n, n, contiguousNoGrad())
    }
}

/// log Σ exp(x) over n values, max-subtracted.
/// Uses `scratch` (n floats) for the exponentials so that the exp loop vectorises.
@inline(__always)
func logSumExp(_ x: UnsafeMutablePointer<Float>, _ n: Int, scratch: UnsafeMutablePointer<Float>) -> Float {
    let m = vmax(x, n)
    if m == -.infinity { return m }
    for j in 0..<n { scratch[j] = fastExp(x[j] - m) }
    return m + Foundation.log(vsum(scratch, n))
}

/// y = softmax(x) over n values; y may alias x.
@inline(__always)
func softmaxRow(_ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    let m = vmax(x, n)
    for j in 0..<n { y[j] = fastExp(x[j] - m) }
    let inv = 1 / vsum(y, n)
    for j in 0..<n { y[j] *= inv }
}
