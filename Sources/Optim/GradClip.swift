import Autograd

/// The global L2 norm of all gradients (Float64 accumulation, fixed order), and rescaling so
/// that it does not exceed `maxNorm`. Returns the norm before clipping, as frameworks log it.
@discardableResult
public func clipGradNorm(_ parameters: [Tensor], maxNorm: Float) -> Float {
    var total = 0.0
    for p in parameters {
        guard let g = p.grad else { continue }
        let c = g.isContiguous ? g : g.clone()
        var s = 0.0
        let d = c.data
        for i in 0..<c.count { s += Double(d[i]) * Double(d[i]) }
        total += s
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
