/// Views and rearrangements: reshape, broadcast, permute/transpose, slice, concat, split.

extension Tensor {
    /// Same elements, new shape. A view when contiguous, otherwise a copy. One dimension may be -1.
    package func reshape(_ newShape: [Int]) -> Tensor {
        let target = resolveShape(newShape, op: "reshape")
        let src = contiguous()
        let out = Tensor(storage: src.storage, shape: target, offset: src.offset)
        let inShape = shape
        return record(out, inputs: [src]) { g in [g.reshape(inShape)] }
    }

    func reshapeNoGrad(_ newShape: [Int]) -> Tensor {
        precondition(isContiguous)
        return Tensor(storage: storage, shape: newShape, offset: offset)
    }

    func resolveShape(_ s: [Int], op: String) -> [Int] {
        var r = s
        let known = s.filter { $0 != -1 }.reduce(1, *)
        if let i = s.firstIndex(of: -1) {
            guard known > 0, count % known == 0, s.filter({ $0 == -1 }).count == 1 else {
                shapeFailure(op, "cannot view shape \(shape) as \(s)")
            }
            r[i] = count / known
        }
        guard r.reduce(1, *) == count else { shapeFailure(op, "cannot view shape \(shape) (\(count) elements) as \(s)") }
        return r
    }

    /// A stride-0 view that repeats size-1 (or missing leading) dimensions up to `target`.
    package func broadcast(to target: [Int]) -> Tensor {
        if target == shape { return self }
        let check = broadcastShape(shape, target, op: "broadcast")
        guard check == target else { shapeFailure("broadcast", "shape \(shape) cannot broadcast to \(target)") }
        let out = Tensor(storage: storage, shape: target, strides: broadcastStrides(self, to: target), offset: offset)
        let inShape = shape
        return record(out, inputs: [self]) { g in [g.sumTo(inShape)] }
    }

    /// Reorders the axes; a view.
    package func permute(_ order: [Int]) -> Tensor {
        guard order.count == rank, Set(order) == Set(0..<rank) else {
            shapeFailure("permute", "order \(order) is not a permutation of the axes of shape \(shape)")
        }
        let out = Tensor(storage: storage, shape: order.map { shape[$0] }, strides: order.map { strides[$0] }, offset: offset)
        var inverse = [Int](repeating: 0, count: rank)
        for (i, o) in order.enumerated() { inverse[o] = i }
        return record(out, inputs: [self]) { g in [g.permute(inverse)] }
    }

    /// Swaps two axes (the last two by default); a view.
    package func transposed(_ a: Int = -2, _ b: Int = -1) -> Tensor {
        var order = Array(0..<rank)
        order.swapAt(axis(a, op: "transpose"), axis(b, op: "transpose"))
        return permute(order)
    }

    /// Elements `range` along `axis`; a view.
    package func slice(axis ax: Int, _ range: Range<Int>) -> Tensor {
        let a = axis(ax, op: "slice")
        guard range.lowerBound >= 0, range.upperBound <= shape[a] else {
            shapeFailure("slice", "range \(range) is outside axis \(a) of shape \(shape)")
        }
        var s = shape
        s[a] = range.count
        let out = Tensor(storage: storage, shape: s, strides: strides, offset: offset + range.lowerBound * strides[a])
        let inShape = shape
        return record(out, inputs: [self]) { g in
            let dx = Tensor(zeros: inShape)
            let view = Tensor(storage: dx.storage, shape: s, strides: dx.strides, offset: range.lowerBound * dx.strides[a])
            copyStrided(from: g, into: view)
            return [dx]
        }
    }

    /// Splits along `axis` into pieces of the given sizes; views.
    package func split(_ sizes: [Int], axis ax: Int) -> [Tensor] {
        let a = axis(ax, op: "split")
        guard sizes.reduce(0, +) == shape[a] else {
            shapeFailure("split", "sizes \(sizes) do not add up to axis \(a) of shape \(shape)")
        }
        var start = 0
        return sizes.map { n in
            defer { start += n }
            return slice(axis: a, start..<(start + n))
        }
    }

    /// Joins tensors along `axis`; all other dimensions must agree.
    package static func concat(_ ts: [Tensor], axis ax: Int) -> Tensor {
        guard let first = ts.first else { shapeFailure("concat", "no tensors") }
        let a = first.axis(ax, op: "concat")
        for t in ts where t.rank != first.rank || (0..<t.rank).contains(where: { $0 != a && t.shape[$0] != first.shape[$0] }) {
            shapeFailure("concat", "shapes \(first.shape) and \(t.shape) differ outside axis \(a)")
        }
        var s = first.shape
        s[a] = ts.reduce(0) { $0 + $1.shape[a] }
        let out = Tensor(uninitialized: s)
        var start = 0
        var ranges: [Range<Int>] = []
        for t in ts {
            var ps = t.shape
            ps[a] = t.shape[a]
            let view = Tensor(storage: out.storage, shape: ps, strides: out.strides, offset: start * out.strides[a])
            copyStrided(from: t, into: view)
            ranges.append(start..<(start + t.shape[a]))
            start += t.shape[a]
        }
        return record(out, inputs: ts) { g in
            ranges.enumerated().map { i, r in ts[i].requiresGrad ? g.slice(axis: a, r).clone() : nil }
        }
    }
}

/// Copies `src` into the (possibly strided) view `dst` of the same shape.
func copyStrided(from src: Tensor, into dst: Tensor) {
    if dst.isContiguous { copyStrided(from: src, to: dst.data); return }
    let c = src.contiguousNoGrad()
    let s = c.data, d = dst.storage.data
    stridedForEach(shape: dst.shape, strides: dst.strides, offset: dst.offset) { i, o in d[o] = s[i] }
    withExtendedLifetime(c) {}
}
