import Foundation

/// The receive buffer of the windowed reduce-scatter (`reduceScatterCanonical`), kept from
/// call to call.
///
/// Why not a fresh array per call: a fresh array of tens of MB may land on pages new to the
/// process, and on a VM whose host backs a page only when it is first touched, touching new
/// pages is slow; the rank that does it holds up every other rank of the collective
/// (docs/benchmarks.md, "the dp phase"). A buffer used every step is faulted in once. One
/// buffer of the largest window any call needed stays resident instead (size ×
/// `CanonicalSum.window` floats at most).
package final class CollectiveBuffer: @unchecked Sendable {
    package static let shared = CollectiveBuffer()

    private let lock = NSLock()
    private var storage: UnsafeMutablePointer<Float>?
    private var capacity = 0

    /// Runs `body` with at least `count` floats of the buffer (contents unspecified). Callers
    /// are serialised: collectives run one at a time on a rank.
    package func withFloats<R>(_ count: Int, _ body: (UnsafeMutablePointer<Float>) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        if count > capacity {
            storage?.deallocate()
            storage = UnsafeMutablePointer<Float>.allocate(capacity: count)
            capacity = count
        }
        return try body(storage!)
    }
}
