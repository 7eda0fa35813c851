/// Sum, mean and max over axes. Sums accumulate in Float64 so that long reductions (losses,
/// gradient norms, bias gradients over many tokens) do not lose the small terms.

extension Tensor {
    /// Sum over `axes` (all axes when nil).
    package func sum(axes: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        let ax = normalizedAxes(axes, op: "sum")
        let keptShape = shape.enumerated().map { ax.contains($0.offset) ? 1 : $0.element }
        let out = Tensor(uninitialized: keptShape)
        reduceSum(self, axes: ax, into: out)
        let result = keepDims ? out : out.reshapeNoGrad(keptShape.enumerated().filter { !ax.contains($0.offset) }.map(\.element))
        return record(result, inputs: [self]) { g in [g.reshape(keptShape).broadcast(to: self.shape)] }
    }

    package func sum(axis: Int, keepDims: Bool = false) -> Tensor { sum(axes: [axis], keepDims: keepDims) }

    package func mean(axes: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        let ax = normalizedAxes(axes, op: "mean")
        let n = ax.reduce(1) { $0 * self.shape[$1] }
        return sum(axes: ax, keepDims: keepDims) * (1 / Float(Swift.max(n, 1)))
    }

    package func mean(axis: Int, keepDims: Bool = false) -> Tensor { mean(axes: [axis], keepDims: keepDims) }

    /// Maximum along one axis; the gradient goes to the first maximal element.
    package func max(axis: Int, keepDims: Bool = false) -> Tensor {
        let a = self.axis(axis, op: "max")
        let src = contiguousNoGrad()
        let outer = shape[..<a].reduce(1, *), n = shape[a], inner = shape[(a + 1)...].reduce(1, *)
        guard n > 0 else { shapeFailure("max", "axis \(axis) of shape \(shape) is empty") }
        var kept = shape
        kept[a] = 1
        let out = Tensor(uninitialized: kept)
        var argmax = [Int](repeating: 0, count: outer * inner)
        let x = src.data, o = out.data
        for i in 0..<outer {
            for j in 0..<inner {
                var best = x[i * n * inner + j], bi = 0
                for k in 1..<n where x[(i * n + k) * inner + j] > best {
                    best = x[(i * n + k) * inner + j]
                    bi = k
                }
                o[i * inner + j] = best
                argmax[i * inner + j] = bi
            }
        }
        var reducedShape = shape
        reducedShape.remove(at: a)
        let result = keepDims ? out : out.reshapeNoGrad(reducedShape)
        let inShape = shape
        return record(result, inputs: [self]) { g in
            let gc = g.contiguousNoGrad()
            let dx = Tensor(zeros: inShape)
            for i in 0..<outer {
                for j in 0..<inner {
                    dx.data[(i * n + argmax[i * inner + j]) * inner + j] = gc.data[i * inner + j]
                }
            }
            return [dx]
        }
    }

    func normalizedAxes(_ axes: [Int]?, op: String) -> [Int] {
        guard let axes else { return Array(0..<rank) }
        return Array(Set(axes.map { axis($0, op: op) })).sorted()
    }
}

/// out (shape with reduced axes kept as 1, contiguous) = sum of `t` over `axes`.
func reduceSum(_ t: Tensor, axes: [Int], into out: Tensor) {
    let o = out.data
    let n = out.count
    // Fast path: contiguous input reduced over its trailing axes (rows).
    let trailing = !axes.isEmpty && axes == Array((t.rank - axes.count)..<t.rank)
    if t.isContiguous && (trailing || axes.isEmpty) {
        let inner = t.count / Swift.max(n, 1), x = t.data
        parallelFor(n, grain: Swift.max(1, 32_768 / Swift.max(inner, 1))) { r in
            for row in r {
                var s = 0.0
                let base = row * inner
                for j in 0..<inner { s += Double(x[base + j]) }
                o[row] = Float(s)
            }
        }
        return
    }
    // Fast path: contiguous input reduced over its leading axes (bias/weight gradients).
    let leading = !axes.isEmpty && axes == Array(0..<axes.count)
    if t.isContiguous && leading {
        let rows = t.count / Swift.max(n, 1), x = t.data
        var acc = [Double](repeating: 0, count: n)
        acc.withUnsafeMutableBufferPointer { a in
            parallelFor(n, grain: Swift.max(1, 32_768 / Swift.max(rows, 1))) { r in
                for row in 0..<rows {
                    let base = row * n
                    for j in r { a[j] += Double(x[base + j]) }
                }
            }
            for j in 0..<n { o[j] = Float(a[j]) }
        }
        return
    }
    // One contiguous run of reduced axes in a contiguous input: [outer, reduced, inner].
    if t.isContiguous, let first = axes.first, axes == Array(first..<(first + axes.count)) {
        let outerN = t.shape[..<first].reduce(1, *), red = axes.reduce(1) { $0 * t.shape[$1] }
        let inner = t.shape[(first + axes.count)...].reduce(1, *), x = t.data
        parallelFor(outerN, grain: Swift.max(1, 32_768 / Swift.max(red * inner, 1))) { r in
            var acc = [Double](repeating: 0, count: inner)
            for oi in r {
                for j in 0..<inner { acc[j] = 0 }
                for k in 0..<red {
                    let base = (oi * red + k) * inner
                    for j in 0..<inner { acc[j] += Double(x[base + j]) }
                }
                for j in 0..<inner { o[oi * inner + j] = Float(acc[j]) }
            }
        }
        return
    }
    // General: walk the input, sending each element to its output cell.
    var outStrides = Tensor.contiguousStrides(out.shape)
    for a in axes { outStrides[a] = 0 }
    var acc = [Double](repeating: 0, count: n)
    let src = t.storage.data
    let outOffsets = offsets(shape: t.shape, strides: outStrides, offset: 0)
    acc.withUnsafeMutableBufferPointer { a in
        stridedForEach(shape: t.shape, strides: t.strides, offset: t.offset) { i, off in
            a[outOffsets[i]] += Double(src[off])
        }
    }
    for j in 0..<n { o[j] = Float(acc[j]) }
}
