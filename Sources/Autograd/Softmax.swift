import Foundation

/// Softmax and log-softmax over the last axis, max-subtracted, with Float64 row sums.

extension Tensor {
    public func softmax() -> Tensor {
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
                    var dot = 0.0
                    for j in 0..<n { dot += Double(gp[b + j]) * Double(y[b + j]) }
                    let s = Float(dot)
                    for j in 0..<n { d[b + j] = y[b + j] * (gp[b + j] - s) }
                }
            }
            return [dx]
        }
    }

    public func logSoftmax() -> Tensor {
        let (rows, n, src) = lastAxisRows(op: "logSoftmax")
        let out = Tensor(uninitialized: shape)
        let x = src.data, y = out.data
        parallelFor(rows, grain: Swift.max(1, 8192 / Swift.max(n, 1))) { r in
            for row in r {
                let b = row * n
                let lse = logSumExp(x + b, n)
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
                    var s = 0.0
                    for j in 0..<n { s += Double(gp[b + j]) }
                    let sf = Float(s)
                    for j in 0..<n { d[b + j] = gp[b + j] - Foundation.exp(y[b + j]) * sf }
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
@inline(__always)
func logSumExp(_ x: UnsafeMutablePointer<Float>, _ n: Int) -> Float {
    var m = -Float.infinity
    for j in 0..<n where x[j] > m { m = x[j] }
    if m == -.infinity { return m }
    var s: Float = 0
    for j in 0..<n { s += Foundation.exp(x[j] - m) }
    return m + Foundation.log(s)
}

@inline(__always)
func softmaxRow(_ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    var m = -Float.infinity
    for j in 0..<n where x[j] > m { m = x[j] }
    var s: Float = 0
    for j in 0..<n {
        let e = Foundation.exp(x[j] - m)
        y[j] = e
        s += e
    }
    let inv = 1 / s
    for j in 0..<n { y[j] *= inv }
}
