import Foundation

/// The receive buffer of the windowed collectives (`reduceScatterCanonical`,
/// `FlatVector.allgatherValues`), kept from call to call.
///
/// Why not a fresh array per call: on the VMs we measure on, touching memory that has sat idle
/// for a while is sometimes slow (the host takes its pages back; the guest sees no page fault).
/// A 32 MiB buffer taken anew for the experts' reduce-scatter cost 20–160 ms in one step in
/// three on a dp = 2 run, where a buffer used every step costs 3 ms. One buffer of the largest
/// window any call needed stays resident instead (size × `CanonicalSum.window` floats).
public final class CollectiveBuffer: @unchecked Sendable {
    public static let shared = CollectiveBuffer()

    private let lock = NSLock()
    private var storage: UnsafeMutablePointer<Float>?
    public private(set) var capacity = 0

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
