import Dispatch
import CBLAS

/// How many threads the fused loops and BLAS use in this process. Under mpirun each rank sets
/// its own share of the cores.
package enum Threads {
    nonisolated(unsafe) package private(set) static var count = 2

    package static func set(_ n: Int) {
        count = max(1, n)
        openblas_set_num_threads(Int32(count))
    }
}

/// Splits `0..<n` into at most `Threads.count` contiguous chunks and runs them concurrently when
/// the work is large enough to pay for waking a thread (`grain` items per chunk at least).
@inline(__always)
package func parallelFor(_ n: Int, grain: Int = 32_768, _ body: (Range<Int>) -> Void) {
    let chunks = min(Threads.count, n / max(grain, 1))
    if chunks <= 1 {
        body(0..<n)
        return
    }
    withoutActuallyEscaping(body) { body in
        // The chunks touch disjoint ranges; the closure's captures are raw buffers.
        let b = unsafeBitCast(body, to: (@Sendable (Range<Int>) -> Void).self)
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let lo = n * c / chunks, hi = n * (c + 1) / chunks
            b(lo..<hi)
        }
    }
}

/// `concurrentPerform` for callers that split work themselves (fixed chunking keeps partial
/// sums in a fixed order, so results do not depend on scheduling).
package enum DispatchQueueConcurrent {
    @inline(__always)
    package static func run(_ n: Int, _ body: (Int) -> Void) {
        withoutActuallyEscaping(body) { body in
            let b = unsafeBitCast(body, to: (@Sendable (Int) -> Void).self)
            DispatchQueue.concurrentPerform(iterations: n, execute: b)
        }
    }
}
