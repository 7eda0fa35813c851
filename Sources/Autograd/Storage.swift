/// A float32 buffer owned by one or more tensors (views share it).
///
/// Raw memory rather than `[Float]`: kernels take pointers without copy-on-write checks, and a
/// view never triggers a copy of the buffer it looks into.
public final class Storage: @unchecked Sendable {
    public let count: Int
    public let data: UnsafeMutablePointer<Float>

    /// Uninitialised memory: callers that read before writing must use `zeroed`.
    public init(uninitialized count: Int) {
        self.count = count
        // 64-byte alignment keeps AVX-512 loads in BLAS and our loops on one cache line.
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        self.data = raw.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    public convenience init(zeroed count: Int) {
        self.init(uninitialized: count)
        data.initialize(repeating: 0, count: count)
    }

    deinit { UnsafeMutableRawPointer(data).deallocate() }
}
