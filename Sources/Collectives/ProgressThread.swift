import Foundation
import CMPI
#if canImport(Glibc)
import Glibc
#endif

/// A thread that lets MPI move data while the rank computes (docs/design.md §11). Open MPI's
/// TCP transport moves a message only inside an MPI call on one of the two ranks; a rank deep
/// in a matrix product makes none for tens of milliseconds, and the link idles. While any
/// `Transfers` holds posted messages (`begin` … `end`) the thread enters MPI every `interval`
/// (1 ms: a 4 MiB socket buffer drains in 32 ms at 1 Gbit/s) and sleeps in between, so it takes
/// little of the cores the ranks compute on; otherwise it waits on a condition.
///
/// Started by `Communicator.world` where the job spans nodes (shared memory needs no help) and
/// MPI grants MPI_THREAD_MULTIPLE, which this needs: the rank's own thread calls MPI meanwhile.
package final class ProgressThread: @unchecked Sendable {
    nonisolated(unsafe) package private(set) static var shared: ProgressThread?

    /// A private duplicate of the world: the thread's probes match none of the job's messages.
    private let comm: MPI_Comm
    private let interval: Double
    private let condition = NSCondition()
    private var users = 0

    private init(comm: MPI_Comm, interval: Double) {
        self.comm = comm
        self.interval = interval
    }

    static func start(world: MPI_Comm, interval: Double) throws {
        var dup: MPI_Comm? = nil
        try Communicator.check("MPI_Comm_dup", MPI_Comm_dup(world, &dup))
        guard let dup else { return }
        let p = ProgressThread(comm: dup, interval: interval)
        let thread = Thread { p.run() }
        thread.name = "mpi-progress"
        thread.stackSize = 1 << 20
        thread.start()
        shared = p
    }

    /// Messages are in flight: enter MPI now and then until the matching `end`.
    package func begin() {
        condition.lock()
        users += 1
        condition.signal()
        condition.unlock()
    }

    package func end() {
        condition.lock()
        users -= 1
        condition.unlock()
    }

    private func run() {
        var found: Int32 = 0
        let pause = timespec(tv_sec: 0, tv_nsec: Int(interval * 1e9))
        while true {
            condition.lock()
            while users == 0 { condition.wait() }
            condition.unlock()
            // A probe that finds nothing runs the progress engine, which moves every pending message.
            MPI_Iprobe(deeptrain_mpi_any_source(), deeptrain_mpi_any_tag(), comm, &found, deeptrain_mpi_status_ignore())
            var rest = pause
            nanosleep(&rest, nil)
        }
    }
}
