import Foundation

/// A float32 n-dimensional array that records the operations applied to it, so that
/// `backward()` can compute gradients in reverse.
///
/// A tensor is a view: `storage` plus `shape`, `strides` (in elements) and `offset`. Most ops
/// produce fresh contiguous tensors; `reshape` of a contiguous tensor, `permute`/`transpose`
/// and `slice` produce views that share storage, so that a transposed weight reaches BLAS as a
/// transpose flag instead of a copy.
///
/// Public where the rest of the package is `package`: NN's `open class Module` returns tensors
/// from open members, and those must name public types.
public final class Tensor: @unchecked Sendable, CustomStringConvertible {
    package let storage: Storage
    package let shape: [Int]
    package let strides: [Int]
    package let offset: Int

    /// Leaves with `requiresGrad` receive gradients in `grad`; results of ops on them carry a
    /// `node` that knows how to send gradients back to their inputs.
    package var requiresGrad: Bool
    package var grad: Tensor?
    var node: Node?
    /// Optional label used in error messages and parameter listings.
    package var name: String?

    package init(storage: Storage, shape: [Int], strides: [Int]? = nil, offset: Int = 0, requiresGrad: Bool = false) {
        self.storage = storage
        self.shape = shape
        self.strides = strides ?? Tensor.contiguousStrides(shape)
        self.offset = offset
        self.requiresGrad = requiresGrad
    }

    /// A new contiguous tensor whose contents are unspecified: for kernels that write every element.
    package convenience init(uninitialized shape: [Int]) {
        self.init(storage: Storage(uninitialized: shape.reduce(1, *)), shape: shape)
    }

    package convenience init(zeros shape: [Int], requiresGrad: Bool = false) {
        self.init(storage: Storage(zeroed: shape.reduce(1, *)), shape: shape, requiresGrad: requiresGrad)
    }

    package convenience init(repeating value: Float, shape: [Int]) {
        self.init(uninitialized: shape)
        storage.data.initialize(repeating: value, count: count)
    }

    package convenience init(_ values: [Float], shape: [Int], requiresGrad: Bool = false) {
        let n = shape.reduce(1, *)
        guard values.count == n else {
            shapeFailure("Tensor(_:shape:)", "\(values.count) values cannot fill shape \(shape) (\(n) elements)")
        }
        self.init(uninitialized: shape)
        values.withUnsafeBufferPointer { storage.data.update(from: $0.baseAddress!, count: n) }
        self.requiresGrad = requiresGrad
    }

    package convenience init(scalar: Float) { self.init([scalar], shape: []) }

    // MARK: geometry

    package var rank: Int { shape.count }
    package var count: Int { shape.reduce(1, *) }

    package static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var s = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[i] = s
            s *= shape[i]
        }
        return strides
    }

    package var isContiguous: Bool {
        var expected = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) where shape[i] != 1 {
            if strides[i] != expected { return false }
            expected *= shape[i]
        }
        return true
    }

    /// Pointer to the first element; valid only for contiguous tensors when read as a flat array.
    package var data: UnsafeMutablePointer<Float> { storage.data + offset }

    /// Normalises a possibly negative axis.
    package func axis(_ a: Int, op: String = "axis") -> Int {
        let r = a < 0 ? a + rank : a
        guard r >= 0 && r < Swift.max(rank, 1) else { shapeFailure(op, "axis \(a) is out of range for shape \(shape)") }
        return r
    }

    // MARK: values

    /// The elements in row-major order (copies; for tests, tools and small readouts).
    package var values: [Float] {
        let c = contiguous()
        return Array(UnsafeBufferPointer(start: c.data, count: c.count))
    }

    /// The value of a one-element tensor.
    package var item: Float {
        guard count == 1 else { shapeFailure("item", "tensor of shape \(shape) has \(count) elements, not 1") }
        return storage.data[offset]
    }

    package subscript(_ index: Int...) -> Float {
        precondition(index.count == rank, "subscript: \(index.count) indices for shape \(shape)")
        var o = offset
        for (i, v) in index.enumerated() { o += v * strides[i] }
        return storage.data[o]
    }

    /// A contiguous tensor with the same values: `self` when already contiguous. Differentiable.
    package func contiguous() -> Tensor {
        if isContiguous { return self }
        let out = Tensor(uninitialized: shape)
        copyStrided(from: self, to: out.data)
        return record(out, inputs: [self]) { g in [g] }
    }

    /// A detached contiguous copy that owns its storage.
    package func clone() -> Tensor {
        let out = Tensor(uninitialized: shape)
        copyStrided(from: self, to: out.data)
        return out
    }

    /// The same values without history.
    package func detached() -> Tensor {
        Tensor(storage: storage, shape: shape, strides: strides, offset: offset)
    }

    public var description: String {
        let v = values
        let shown = v.prefix(8).map { String(format: "%.5g", Double($0)) }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(shown)\(v.count > 8 ? ", …" : "")])"
    }
}

/// Stops the program with one message naming the op and the shapes involved. Shape errors are
/// programming errors inside the framework (user input is validated with a clear error earlier),
/// so they are not thrown through every numeric call.
package func shapeFailure(_ op: String, _ detail: String) -> Never {
    fatalError("\(op): \(detail)")
}

/// Copies a strided tensor's elements into a contiguous buffer in row-major order.
func copyStrided(from t: Tensor, to dst: UnsafeMutablePointer<Float>) {
    let src = t.storage.data
    if t.isContiguous {
        dst.update(from: src + t.offset, count: t.count)
        return
    }
    stridedForEach(shape: t.shape, strides: t.strides, offset: t.offset) { i, o in dst[i] = src[o] }
}

/// Calls `body(linearIndex, storageOffset)` for every element of a strided view, in row-major
/// order; the innermost dimension runs as a tight loop.
@inline(__always)
func stridedForEach(shape: [Int], strides: [Int], offset: Int, _ body: (Int, Int) -> Void) {
    let r = shape.count
    if r == 0 { body(0, offset); return }
    let n = shape.reduce(1, *)
    if n == 0 { return }
    let inner = shape[r - 1], innerStride = strides[r - 1]
    var idx = [Int](repeating: 0, count: r)
    var base = offset
    var linear = 0
    while linear < n {
        var o = base
        for j in 0..<inner {
            body(linear + j, o)
            o += innerStride
        }
        linear += inner
        // advance the outer dimensions
        var d = r - 2
        while d >= 0 {
            idx[d] += 1
            base += strides[d]
            if idx[d] < shape[d] { break }
            base -= strides[d] * shape[d]
            idx[d] = 0
            d -= 1
        }
        if d < 0 { break }
    }
}
