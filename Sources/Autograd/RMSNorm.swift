/// Fused RMSNorm over the last axis: y = x / sqrt(mean(x²) + eps) · w.

extension Tensor {
    package func rmsNorm(weight: Tensor, eps: Float) -> Tensor {
        let (rows, n, src) = lastAxisRows(op: "rmsNorm")
        guard weight.shape == [n] else {
            shapeFailure("rmsNorm", "weight \(weight.shape) does not match the last axis of input \(shape)")
        }
        let w = weight.contiguousNoGrad()
        let out = Tensor(uninitialized: shape)
        var inv = [Float](repeating: 0, count: rows)  // 1/rms per row, kept for backward
        let x = src.data, y = out.data, wp = w.data
        inv.withUnsafeMutableBufferPointer { invp in
            parallelFor(rows, grain: Swift.max(1, 8192 / Swift.max(n, 1))) { r in
                for row in r {
                    let b = row * n
                    let ss = vdot(x + b, x + b, n)
                    let s = 1 / (ss / Float(n) + eps).squareRoot()
                    invp[row] = s
                    for j in 0..<n { y[b + j] = x[b + j] * s * wp[j] }
                }
            }
        }
        return record(out, inputs: [self, weight]) { g in
            let gc = g.contiguousNoGrad()
            let gp = gc.data
            let dx = Tensor(uninitialized: src.shape)
            let d = dx.data
            // dw sums over rows: per-thread partial sums, then added in a fixed order.
            let chunks = Swift.max(1, Swift.min(Threads.count, rows / Swift.max(1, 8192 / Swift.max(n, 1))))
            var partial = [Double](repeating: 0, count: chunks * n)
            inv.withUnsafeBufferPointer { invp in
                partial.withUnsafeMutableBufferPointer { pp in
                    let pbase = pp.baseAddress!
                    let body = { (c: Int) in
                        let lo = rows * c / chunks, hi = rows * (c + 1) / chunks
                        let acc = pbase + c * n
                        for row in lo..<hi {
                            let b = row * n
                            let s = invp[row]
                            let m = vdot3(gp + b, wp, x + b, n) * s / Float(n)  // mean of g·w·x̂
                            for j in 0..<n {
                                let xh = x[b + j] * s
                                d[b + j] = s * (gp[b + j] * wp[j] - xh * m)
                                acc[j] += Double(gp[b + j] * xh)
                            }
                        }
                    }
                    if chunks == 1 { body(0) } else { DispatchQueueConcurrent.run(chunks, body) }
                }
            }
            let dw = Tensor(uninitialized: [n])
            for j in 0..<n {
                var s = 0.0
                for c in 0..<chunks { s += partial[c * n + j] }
                dw.data[j] = Float(s)
            }
            withExtendedLifetime((src, w)) {}  // x and wp point into these
            return [dx, dw]
        }
    }
}
