import Foundation

/// The receive buffer of the windowed reduce-scatter (`reduceScatterCanonical`), kept from
/// call to call.
///
/// Why not a fresh array per call: a fresh 32 MB array was sometimes placed on pages new to
/// the process, and on the VMs we measure on a new page costs ~30 µs to touch (the host backs
/// it on first use). In a dp = 2 run the rank that took those pages spent 100–300 ms in the
/// experts' reduce-scatter while the other waited; a buffer used every step costs nothing of
/// the kind. One buffer of the largest window any call needed stays resident instead
/// (size × `CanonicalSum.window` floats at most).
public final class CollectiveBuffer: @unchecked Sendable {
    public static let shared = CollectiveBuffer()

    private let lock = NSLock()
    private var storage: UnsafeMutablePointer<Float>?
    private var capacity = 0

    /// Runs `body` with at least `count` floats of the buffer (contents unspecified). Callers
    /// are serialised: collectives run one at a time on a rank.
    public func withFloats<R>(_ count: Int, _ body: (UnsafeMutablePointer<Float>) throws -> R) rethrows -> R {
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
