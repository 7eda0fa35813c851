import Autograd

/// The global L2 norm of all gradients (Float64 accumulation, fixed order), and rescaling so
/// that it does not exceed `maxNorm`. Returns the norm before clipping, as frameworks log it.
@discardableResult
package func clipGradNorm(_ parameters: [Tensor], maxNorm: Float) -> Float {
    var total = 0.0
    for p in parameters {
        guard let g = p.grad else { continue }
        total += sumOfSquares(g.isContiguous ? g : g.clone())
    }
    let norm = Float(total.squareRoot())
    if maxNorm > 0 && norm.isFinite && norm > maxNorm {
        let scale = maxNorm / (norm + 1e-6)
        for p in parameters {
            guard let g = p.grad else { continue }
            let d = g.data
            parallelFor(g.count, grain: 16_384) { r in for i in r { d[i] *= scale } }
        }
    }
    return norm
}

/// Σ x² of a contiguous tensor: 4096-element blocks in 16 float lanes, the blocks added in
/// Float64 in index order, so the result does not depend on how threads split the work.
func sumOfSquares(_ t: Tensor) -> Double {
    let block = 4096, n = t.count, blocks = (n + block - 1) / block
    var partial = [Double](repeating: 0, count: blocks)
    let d = t.data
    partial.withUnsafeMutableBufferPointer { pp in
        let base = pp.baseAddress!
        parallelFor(blocks, grain: 16) { r in
            for bi in r {
                let lo = bi * block, len = Swift.min(block, n - lo)
                let s = blockSumOfSquares(d + lo, len)
                base[bi] = s
            }
        }
    }
    return partial.reduce(0, +)
}

/// Σ x² of up to a few thousand floats in 16 float lanes, the tail in Float64: the block sum
/// every gradient norm is built from (in a fixed order of blocks, the norm's bits do not depend
/// on threads or ranks).
@inline(__always)
package func blockSumOfSquares(_ d: UnsafePointer<Float>, _ len: Int) -> Double {
    var acc = SIMD16<Float>(repeating: 0)
    var j = 0
    let raw = UnsafeRawPointer(d)
    while j + 16 <= len {
        let v = raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD16<Float>.self)
        acc += v * v
        j += 16
    }
    var s = Double(acc.sum())
    while j < len { s += Double(d[j]) * Double(d[j]); j += 1 }
    return s
}
