import Dispatch
import Synchronization
import CBLAS

/// How many threads this process computes on. Under mpirun each rank sets its own share of
/// the cores. OpenBLAS always runs on one thread: DeepTrain cuts products itself
/// (`GemmCut`), at places the thread count does not move, so results do not depend on it.
package enum Threads {
    nonisolated(unsafe) package private(set) static var count = 2

    package static func set(_ n: Int) {
        count = max(1, n)
        blasOnOneThread()
    }

    /// OpenBLAS starts with a thread per core; the first product (or `set`) drops it to one.
    private static let oneBLASThread: Void = openblas_set_num_threads(1)

    @inline(__always)
    package static func blasOnOneThread() { _ = oneBLASThread }

    /// Runs `body` with OpenBLAS splitting its calls over `n` threads: only for measuring
    /// OpenBLAS itself (the sgemm peak that MFU is taken against, `bench gemm`'s raw column).
    package static func withBLASThreads<R>(_ n: Int, _ body: () throws -> R) rethrows -> R {
        blasOnOneThread()
        openblas_set_num_threads(Int32(max(1, n)))
        defer { openblas_set_num_threads(1) }
        return try body()
    }
}

/// Set while `parallelPieces`, `parallelHeads` or `parallelTasks` run work on a thread pool:
/// work they start from inside runs in order on its own thread instead of waking more.
package enum ParallelRegion {
    private static let depth = Atomic<Int>(0)

    package static var active: Bool { depth.load(ordering: .relaxed) > 0 || SpinningWorker.inJob }

    /// Runs `n` tasks on `workers` threads of the dispatch pool, each claiming the next task.
    package static func run(_ n: Int, workers: Int, _ body: (Int) -> Void) {
        if SpinningWorker.available {
            SpinningWorker.run(n, body)
            return
        }
        depth.add(1, ordering: .relaxed)
        defer { depth.subtract(1, ordering: .relaxed) }
        let next = Atomic<Int>(0)
        DispatchQueueConcurrent.run(workers) { _ in
            while true {
                let i = next.add(1, ordering: .relaxed).oldValue
                if i >= n { break }
                body(i)
            }
        }
    }
}

/// Runs body(0..<n) — pieces of one product whose results do not depend on which thread ran
/// them — on the spinning worker while it serves, else on the dispatch pool with up to
/// `Threads.count` threads, else in order.
package func parallelPieces(_ n: Int, _ body: (Int) -> Void) {
    if n > 1 && SpinningWorker.available {
        SpinningWorker.run(n, body)
    } else if n > 1 && Threads.count > 1 && !ParallelRegion.active {
        ParallelRegion.run(n, workers: min(Threads.count, n), body)
    } else {
        for i in 0..<n { body(i) }
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
    if SpinningWorker.available {
        SpinningWorker.run(chunks) { c in body(n * c / chunks..<n * (c + 1) / chunks) }
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
        if n > 1 && SpinningWorker.available {
            SpinningWorker.run(n, body)
            return
        }
        withoutActuallyEscaping(body) { body in
            let b = unsafeBitCast(body, to: (@Sendable (Int) -> Void).self)
            DispatchQueue.concurrentPerform(iterations: n, execute: b)
        }
    }
}
