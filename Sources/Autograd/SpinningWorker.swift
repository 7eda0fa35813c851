import Foundation
import Synchronization
import CBLAS

/// A second thread that is awake when work comes. Waking a pooled thread (`concurrentPerform`)
/// takes tens of microseconds on a virtual machine: longer than most of a decoding step's
/// small GEMMs, and a tenth or more of a training step's products and element-wise loops,
/// hundreds of them a step (figures: docs/benchmarks.md, "Decoding on both cores", "The
/// spinning worker in training"). Inside `serve` — decoding, and a stage's steps — every split
/// (`parallelPieces`, `parallelFor`, `parallelHeads`, `parallelTasks`) runs on this worker: it
/// spins (yielding its core to anyone runnable) and takes tasks from a shared counter within a
/// microsecond; after a millisecond without work (a checkpoint, a collective's wait) it
/// sleeps until the next job, and after `serve` it sleeps sooner.
///
/// A task's result does not depend on which thread ran it: callers split work into the same
/// tasks whichever thread takes them.
package final class SpinningWorker: @unchecked Sendable {
    package static let shared = SpinningWorker()

    /// The posted job: generation << 40 | task count << 20 | next unclaimed task.
    private let claim = Atomic<Int>(0)
    /// Tasks of the current job finished, by either thread.
    private let done = Atomic<Int>(0)
    private let sleeping = Atomic<Bool>(false)
    /// pthread of the serving thread (0: nobody serves) and how deep its `serve` calls nest.
    private let owner = Atomic<UInt>(0)
    private var depth = 0
    /// Set while a job runs: a task that posts work itself runs it inline.
    private let busy = Atomic<Bool>(false)
    private var job: UnsafeMutableRawPointer? = nil
    private var generation = 0
    private let wake = DispatchSemaphore(value: 0)
    private var thread: Thread? = nil
    /// How long the worker spins without work before it sleeps: while a thread serves, and not.
    private static let servingIdleNanoseconds: UInt64 = 1_000_000
    private static let idleNanoseconds: UInt64 = 200_000

    private static let indexBits = 20, mask = (1 << 20) - 1

    private init() {}

    /// Runs `work` with the worker ready for `run`. Only with two threads or more (a rank with
    /// one thread must not take a core from its neighbour) and on one thread at a time.
    package static func serve<R>(_ work: () throws -> R) rethrows -> R {
        let w = shared
        guard Threads.count >= 2 else { return try work() }
        let me = UInt(pthread_self())
        let (took, _) = w.owner.compareExchange(expected: 0, desired: me, ordering: .acquiringAndReleasing)
        guard took || w.owner.load(ordering: .acquiring) == me else { return try work() }
        w.depth += 1
        w.start()
        defer {
            w.depth -= 1
            if w.depth == 0 { w.owner.store(0, ordering: .releasing) }
        }
        return try work()
    }

    /// True on the serving thread outside a job: `run` will split there.
    package static var available: Bool {
        let w = shared
        let owner = w.owner.load(ordering: .acquiring)
        return owner != 0 && owner == UInt(pthread_self()) && !w.busy.load(ordering: .relaxed)
    }

    /// True while a job runs (on either thread): work posted from inside a task runs inline,
    /// and the thread pools' splits (`parallelTasks`, `parallelHeads`) run serially there too.
    package static var inJob: Bool { shared.busy.load(ordering: .relaxed) }

    /// Runs body(0..<n) over this thread and the worker, each taking the next unclaimed task;
    /// returns when all are done. Outside `serve` (or nested in a task) it runs them in order.
    package static func run(_ n: Int, _ body: (Int) -> Void) {
        guard n > 1, available, n <= mask else {
            for i in 0..<n { body(i) }
            return
        }
        shared.post(n, body)
    }

    private func post(_ n: Int, _ body: (Int) -> Void) {
        busy.store(true, ordering: .relaxed)
        withoutActuallyEscaping(body) { body in
            var f = body
            withUnsafeMutablePointer(to: &f) { p in
                job = UnsafeMutableRawPointer(p)
                done.store(0, ordering: .relaxed)
                generation = (generation + 1) & ((1 << 23) - 1)  // 23 bits: the claim stays positive
                claim.store(generation << 40 | n << Self.indexBits, ordering: .sequentiallyConsistent)
                if sleeping.load(ordering: .sequentiallyConsistent), sleeping.exchange(false, ordering: .sequentiallyConsistent) {
                    wake.signal()
                }
                while let i = take() { p.pointee(i); done.add(1, ordering: .releasing) }
                while done.load(ordering: .acquiring) < n {}
                job = nil
            }
        }
        busy.store(false, ordering: .relaxed)
    }

    /// Claims the next task of the posted job, if one is left.
    private func take() -> Int? {
        var c = claim.load(ordering: .acquiring)
        while true {
            let count = (c >> Self.indexBits) & Self.mask, i = c & Self.mask
            if i >= count { return nil }
            let (ok, now) = claim.compareExchange(expected: c, desired: c + 1, ordering: .acquiringAndReleasing)
            if ok { return i }
            c = now
        }
    }

    private func start() {
        guard thread == nil else {
            if sleeping.exchange(false, ordering: .sequentiallyConsistent) { wake.signal() }
            return
        }
        let t = Thread { [unowned self] in self.loop() }
        t.name = "deeptrain-spinning-worker"
        thread = t
        t.start()
    }

    private func loop() {
        var lastWork = DispatchTime.now().uptimeNanoseconds
        while true {
            if let i = take() {
                // A claimed task keeps its job posted: the poster waits for `done`.
                job!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(i)
                done.add(1, ordering: .releasing)
                lastWork = DispatchTime.now().uptimeNanoseconds
                continue
            }
            let idle = owner.load(ordering: .relaxed) != 0 ? Self.servingIdleNanoseconds : Self.idleNanoseconds
            if DispatchTime.now().uptimeNanoseconds - lastWork < idle {
                sched_yield()
                continue
            }
            sleeping.store(true, ordering: .sequentiallyConsistent)
            let c = claim.load(ordering: .sequentiallyConsistent)
            if c & Self.mask < (c >> Self.indexBits) & Self.mask {
                sleeping.store(false, ordering: .sequentiallyConsistent)
                continue
            }
            wake.wait()
            lastWork = DispatchTime.now().uptimeNanoseconds
        }
    }
}
