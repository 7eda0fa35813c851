import CBLAS
import Foundation

/// A float32 buffer owned by one or more tensors (views share it).
///
/// Raw memory rather than `[Float]`: kernels take pointers without copy-on-write checks, and a
/// view never triggers a copy of the buffer it looks into.
package final class Storage: @unchecked Sendable {
    package let count: Int
    package let data: UnsafeMutablePointer<Float>
    /// Pages mapped for `lazyZeroed`: unmapped on release, never pooled.
    let mappedBytes: Int

    /// Uninitialised memory: callers that read before writing must use `zeroed`.
    package init(uninitialized count: Int) {
        self.count = count
        data = BufferPool.shared.take(count)
        mappedBytes = 0
    }

    package convenience init(zeroed count: Int) {
        self.init(uninitialized: count)
        data.initialize(repeating: 0, count: count)
    }

    /// Zeros that cost no memory until written: fresh anonymous pages (the kernel's zero page
    /// until touched). Parameters are made this way, so a rank that never touches another
    /// stage's layers or another ep block's experts never holds them (a small buffer is simply
    /// zeroed).
    package init(lazyZeroed count: Int) {
        self.count = count
        let bytes = count * 4
        if bytes >= 1 << 20, let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED {
            // No transparent huge pages (on machines where they are "always"): a 2 MiB page
            // faulted in by this rank's experts would bring its neighbours' into memory too.
            madvise(p, bytes, MADV_NOHUGEPAGE)
            data = p.bindMemory(to: Float.self, capacity: count)
            mappedBytes = bytes
        } else {
            data = BufferPool.shared.take(count)
            data.initialize(repeating: 0, count: count)
            mappedBytes = 0
        }
    }

    /// Made by `lazyZeroed` as its own mapping (pages resident only once touched).
    package var isMapped: Bool { mappedBytes > 0 }

    /// Resident bytes of the whole pages inside `p ..< p + count` (mincore): how much of a
    /// lazily mapped parameter this process has touched.
    package static func residentBytes(_ p: UnsafeMutablePointer<Float>, count: Int) -> Int {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let lo = (Int(bitPattern: p) + page - 1) / page * page, hi = (Int(bitPattern: p) + count * 4) / page * page
        guard hi > lo else { return 0 }
        var vec = [UInt8](repeating: 0, count: (hi - lo) / page)
        guard mincore(UnsafeMutableRawPointer(bitPattern: lo), hi - lo, &vec) == 0 else { return 0 }
        return vec.reduce(0) { $0 + Int($1 & 1) } * page
    }

    deinit {
        if mappedBytes > 0 { munmap(UnsafeMutableRawPointer(data), mappedBytes) } else { BufferPool.shared.give(data, count) }
    }
}

/// What the tensors of this process hold, counted over buffers of at least 64 KiB (the
/// pooled sizes, rounded to their size class; parameters mapped with `lazyZeroed` are not
/// counted): how `deeptrain plan`'s activation estimate is checked against the code.
package enum TensorMemory {
    /// Bytes in live buffers now.
    package static var liveBytes: Int { BufferPool.shared.counters.live }
    /// The most live bytes at once since the last `resetPeak()`.
    package static var peakBytes: Int { BufferPool.shared.counters.peak }
    /// Freed bytes the pool keeps for reuse (resident, not live).
    package static var pooledBytes: Int { BufferPool.shared.counters.pooled }
    package static func resetPeak() { BufferPool.shared.resetPeak() }
    /// The bytes a buffer of `floats` takes: pooled sizes are rounded up to their size class.
    package static func bufferBytes(floats: Int) -> Int {
        4 * (floats >= BufferPool.shared.minPooled ? BufferPool.sizeClass(floats) : floats)
    }
}

/// Freed buffers kept by exact size for the next allocation of that size.
///
/// A training step allocates and frees the same activation sizes every step. Returning large
/// blocks to the kernel and faulting them in again (glibc mmaps anything over 32 MB and trims
/// the heap) makes every step clear its pages anew (docs/benchmarks.md); a pool turns every
/// step after the first into reuse, and keeps peak memory flat (the pool only holds blocks that
/// the previous step had live at once). Small buffers go straight to malloc, which caches them.
final class BufferPool: @unchecked Sendable {
    static let shared = BufferPool()

    /// Buffers below this many floats are not pooled (malloc's own bins serve them well).
    let minPooled = 16_384
    /// Upper bound on pooled bytes, so a change of shapes cannot grow the pool without limit.
    let capacityBytes = 2 << 30
    private var free: [Int: [UnsafeMutablePointer<Float>]] = [:]
    private var pooledBytes = 0
    /// Bytes of pooled-size buffers in use (size classes), and their peak since `resetPeak`.
    private var liveBytes = 0, peakLiveBytes = 0
    /// The most bytes ever live at once: what the pool may keep resident (live + pooled).
    private var highWater = 0
    private let lock = NSLock()

    var counters: (live: Int, peak: Int, pooled: Int) {
        lock.lock(); defer { lock.unlock() }
        return (liveBytes, peakLiveBytes, pooledBytes)
    }

    func resetPeak() {
        lock.lock(); peakLiveBytes = liveBytes; lock.unlock()
    }

    /// Pooled sizes are rounded up to a size class (4 per power of two, ≤ 25% slack), so that
    /// buffers whose sizes vary a little from step to step — an expert's share of the tokens —
    /// still find a freed block to reuse.
    static func sizeClass(_ count: Int) -> Int {
        guard count > 4 else { return count }
        let step = 1 << Swift.max(0, (Int.bitWidth - count.leadingZeroBitCount - 1) - 2)
        return (count + step - 1) / step * step
    }

    func take(_ requested: Int) -> UnsafeMutablePointer<Float> {
        let count = requested >= minPooled ? BufferPool.sizeClass(requested) : requested
        if requested >= minPooled {
            lock.lock()
            liveBytes += count * 4
            peakLiveBytes = Swift.max(peakLiveBytes, liveBytes)
            highWater = Swift.max(highWater, liveBytes)
            if let p = free[count]?.popLast() {
                if free[count]!.isEmpty { free[count] = nil }  // only non-empty lists: eviction picks by key
                pooledBytes -= count * 4
                lock.unlock()
                return p
            }
            // A miss: the pooled blocks of other sizes are not what the steps need (the experts'
            // row counts change with the routing), so keep live + pooled within the most ever
            // live at once. Otherwise the pool grows step after step towards its capacity.
            var evicted: [UnsafeMutablePointer<Float>] = []
            while liveBytes + pooledBytes > highWater, let size = free.keys.min() {
                let p = free[size]!.removeLast()
                if free[size]!.isEmpty { free[size] = nil }
                pooledBytes -= size * 4
                evicted.append(p)
            }
            lock.unlock()
            for p in evicted { UnsafeMutableRawPointer(p).deallocate() }
        }
        // 64-byte alignment keeps AVX-512 loads in BLAS and our loops on one cache line.
        let raw = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(count, 1) * 4, alignment: 64)
        return raw.bindMemory(to: Float.self, capacity: Swift.max(count, 1))
    }

    func give(_ p: UnsafeMutablePointer<Float>, _ requested: Int) {
        let count = requested >= minPooled ? BufferPool.sizeClass(requested) : requested
        if requested >= minPooled {
            lock.lock()
            liveBytes -= count * 4
            if pooledBytes + count * 4 <= capacityBytes {
                free[count, default: []].append(p)
                pooledBytes += count * 4
                lock.unlock()
                return
            }
            lock.unlock()
        }
        UnsafeMutableRawPointer(p).deallocate()
    }
}
