/// Binary arithmetic with NumPy broadcasting, scalar forms, and the no-grad helpers the engine
/// and optimizers use.

/// The broadcast shape of two shapes, or a failure naming the op.
package func broadcastShape(_ a: [Int], _ b: [Int], op: String) -> [Int] {
    let r = max(a.count, b.count)
    var out = [Int](repeating: 1, count: r)
    for i in 0..<r {
        let da = i < r - a.count ? 1 : a[i - (r - a.count)]
        let db = i < r - b.count ? 1 : b[i - (r - b.count)]
        if da == db || db == 1 { out[i] = da } else if da == 1 { out[i] = db } else {
            shapeFailure(op, "shapes \(a) and \(b) cannot be broadcast together")
        }
    }
    return out
}

/// Strides that read `t` as if it had shape `target` (stride 0 along broadcast dimensions).
func broadcastStrides(_ t: Tensor, to target: [Int]) -> [Int] {
    let r = target.count, k = t.rank
    var s = [Int](repeating: 0, count: r)
    for i in 0..<k where t.shape[i] != 1 {
        s[r - k + i] = t.strides[i]
    }
    return s
}

enum BinaryOp { case add, sub, mul, div }

@inline(__always)
private func apply(_ op: BinaryOp, _ x: Float, _ y: Float) -> Float {
    switch op {
    case .add: return x + y
    case .sub: return x - y
    case .mul: return x * y
    case .div: return x / y
    }
}

/// Forward kernel for all four ops: fast paths for equal contiguous shapes and for a
/// contiguous row operand broadcast over leading dims (bias, norm weight); strided otherwise.
func binaryForward(_ op: BinaryOp, _ a: Tensor, _ b: Tensor, name: String) -> Tensor {
    let shape = a.shape == b.shape ? a.shape : broadcastShape(a.shape, b.shape, op: name)
    let out = Tensor(uninitialized: shape)
    let n = out.count
    let o = out.data
    if a.shape == b.shape && a.isContiguous && b.isContiguous {
        let x = a.data, y = b.data
        parallelFor(n) { r in
            switch op {
            case .add: for i in r { o[i] = x[i] + y[i] }
            case .sub: for i in r { o[i] = x[i] - y[i] }
            case .mul: for i in r { o[i] = x[i] * y[i] }
            case .div: for i in r { o[i] = x[i] / y[i] }
            }
        }
        return out
    }
    if a.shape == shape && a.isContiguous && b.isContiguous && b.count > 0 && shape.count >= b.rank
        && Array(shape.suffix(b.rank)) == b.shape {
        let x = a.data, y = b.data, inner = b.count, rows = n / inner
        parallelFor(rows, grain: Swift.max(1, 32_768 / inner)) { r in
            for row in r {
                let base = row * inner
                for j in 0..<inner { o[base + j] = apply(op, x[base + j], y[j]) }
            }
        }
        return out
    }
    // One operand holds one value per row of the other (shape [..., 1]): a per-row scalar,
    // as when expert outputs [n, D] are scaled by gate weights [n, 1].
    if a.isContiguous && b.isContiguous && a.rank == b.rank && a.rank >= 1 {
        if let inner = rowScalarInner(full: a.shape, scalar: b.shape), a.shape == shape {
            let x = a.data, y = b.data, rows = n / Swift.max(inner, 1)
            parallelFor(rows, grain: Swift.max(1, 32_768 / Swift.max(inner, 1))) { r in
                for row in r {
                    let v = y[row], base = row * inner
                    for j in 0..<inner { o[base + j] = apply(op, x[base + j], v) }
                }
            }
            return out
        }
        if let inner = rowScalarInner(full: b.shape, scalar: a.shape), b.shape == shape {
            let x = a.data, y = b.data, rows = n / Swift.max(inner, 1)
            parallelFor(rows, grain: Swift.max(1, 32_768 / Swift.max(inner, 1))) { r in
                for row in r {
                    let v = x[row], base = row * inner
                    for j in 0..<inner { o[base + j] = apply(op, v, y[base + j]) }
                }
            }
            return out
        }
    }
    // General: walk output rows with two strided cursors; the last axis is the inner loop.
    let sa = broadcastStrides(a, to: shape), sb = broadcastStrides(b, to: shape)
    let pa = a.storage.data, pb = b.storage.data
    let r = shape.count
    let inner = r == 0 ? 1 : shape[r - 1]
    let ia = r == 0 ? 0 : sa[r - 1], ib = r == 0 ? 0 : sb[r - 1]
    let outer = Array(shape.dropLast())
    let rowsA = offsets(shape: outer, strides: Array(sa.dropLast()), offset: a.offset)
    let rowsB = offsets(shape: outer, strides: Array(sb.dropLast()), offset: b.offset)
    for row in 0..<rowsA.count {
        let oa = rowsA[row], ob = rowsB[row], base = row * inner
        for j in 0..<inner { o[base + j] = apply(op, pa[oa + j * ia], pb[ob + j * ib]) }
    }
    return out
}

/// If `scalar` equals `full` up to some axis and is 1 after it, the number of elements of
/// `full` per element of `scalar`; nil otherwise.
func rowScalarInner(full: [Int], scalar: [Int]) -> Int? {
    guard full.count == scalar.count, full != scalar else { return nil }
    var i = full.count
    while i > 0 && scalar[i - 1] == 1 { i -= 1 }
    guard i < full.count, Array(full[..<i]) == Array(scalar[..<i]) else { return nil }
    return full[i...].reduce(1, *)
}

/// Storage offsets of every element of a strided view in row-major order.
func offsets(shape: [Int], strides: [Int], offset: Int) -> [Int] {
    var result = [Int](repeating: 0, count: shape.reduce(1, *))
    result.withUnsafeMutableBufferPointer { buf in
        stridedForEach(shape: shape, strides: strides, offset: offset) { i, o in buf[i] = o }
    }
    return result
}

extension Tensor {
    /// Sums a gradient of the broadcast shape back down to `shape` (the reverse of broadcasting).
    package func sumTo(_ target: [Int]) -> Tensor {
        if shape == target { return self }
        let lead = rank - target.count
        var axes: [Int] = Array(0..<lead)
        for (i, d) in target.enumerated() where d == 1 && shape[lead + i] != 1 { axes.append(lead + i) }
        let s = sum(axes: axes, keepDims: true)
        return s.reshape(target)
    }

    package static func + (a: Tensor, b: Tensor) -> Tensor {
        let out = binaryForward(.add, a, b, name: "add")
        return record(out, inputs: [a, b]) { g in
            [a.requiresGrad ? g.sumTo(a.shape) : nil, b.requiresGrad ? g.sumTo(b.shape) : nil]
        }
    }

    package static func - (a: Tensor, b: Tensor) -> Tensor {
        let out = binaryForward(.sub, a, b, name: "sub")
        return record(out, inputs: [a, b]) { g in
            [a.requiresGrad ? g.sumTo(a.shape) : nil, b.requiresGrad ? (-g).sumTo(b.shape) : nil]
        }
    }

    package static func * (a: Tensor, b: Tensor) -> Tensor {
        let out = binaryForward(.mul, a, b, name: "mul")
        return record(out, inputs: [a, b]) { g in
            [a.requiresGrad ? (g * b.detached()).sumTo(a.shape) : nil,
             b.requiresGrad ? (g * a.detached()).sumTo(b.shape) : nil]
        }
    }

    package static func / (a: Tensor, b: Tensor) -> Tensor {
        let out = binaryForward(.div, a, b, name: "div")
        return record(out, inputs: [a, b]) { g in
            let bd = b.detached()
            return [a.requiresGrad ? (g / bd).sumTo(a.shape) : nil,
                    b.requiresGrad ? (-(g * out.detached()) / bd).sumTo(b.shape) : nil]
        }
    }

    package static prefix func - (a: Tensor) -> Tensor { a.map(scale: -1, shift: 0) }
    package static func + (a: Tensor, s: Float) -> Tensor { a.map(scale: 1, shift: s) }
    package static func - (a: Tensor, s: Float) -> Tensor { a.map(scale: 1, shift: -s) }
    package static func * (a: Tensor, s: Float) -> Tensor { a.map(scale: s, shift: 0) }
    package static func / (a: Tensor, s: Float) -> Tensor { a.map(scale: 1 / s, shift: 0) }
    package static func + (s: Float, a: Tensor) -> Tensor { a.map(scale: 1, shift: s) }
    package static func - (s: Float, a: Tensor) -> Tensor { a.map(scale: -1, shift: s) }
    package static func * (s: Float, a: Tensor) -> Tensor { a.map(scale: s, shift: 0) }

    /// a·x + b elementwise, the affine map behind the scalar operators.
    func map(scale: Float, shift: Float) -> Tensor {
        let src = contiguousNoGrad()
        let out = Tensor(uninitialized: shape)
        let x = src.data, o = out.data
        parallelFor(count) { r in for i in r { o[i] = x[i] * scale + shift } }
        return record(out, inputs: [self]) { g in [g.map(scale: scale, shift: 0)] }
    }

    /// Contiguous values without recording (kernels read through this).
    @inline(__always)
    package func contiguousNoGrad() -> Tensor { isContiguous ? self : clone() }

    /// Elementwise sum without recording, used by the engine to accumulate gradients.
    func plainAdd(_ other: Tensor) -> Tensor { withNoGrad { self + other } }

    /// Sets every element to `value` (the tensor must be contiguous).
    package func fill(_ value: Float) {
        precondition(isContiguous, "fill: needs a contiguous tensor")
        data.update(repeating: value, count: count)
    }

    /// Copies `other`'s values into this tensor in place (same shape).
    package func copy(from other: Tensor) {
        guard other.shape == shape else { shapeFailure("copy", "shapes \(shape) and \(other.shape) differ") }
        precondition(isContiguous, "copy: destination must be contiguous")
        copyStrided(from: other, to: data)
    }
}

/// dst += src in place; dst must be contiguous, src is read through its strides.
func addInPlace(_ dst: Tensor, _ src: Tensor) {
    guard dst.shape == src.shape else { shapeFailure("accumulate", "gradient \(src.shape) into \(dst.shape)") }
    let d = dst.data
    if src.isContiguous {
        let s = src.data
        parallelFor(dst.count) { r in for i in r { d[i] += s[i] } }
    } else {
        let s = src.storage.data
        stridedForEach(shape: src.shape, strides: src.strides, offset: src.offset) { i, o in d[i] += s[o] }
    }
}
