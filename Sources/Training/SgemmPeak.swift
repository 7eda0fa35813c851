import Foundation
import Autograd
import Collectives
import CBLAS

/// The machine's sgemm peak that MFU divides by (docs/design.md §7): measured on this machine with the
/// kernel in use and a given thread count, once, then cached per machine — keyed by CPU, kernel,
/// OpenBLAS build and threads, so another kernel or a changed library is measured anew.
/// `deeptrain env --measure` measures again. Cache: `$DEEPTRAIN_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/deeptrain`, else `~/.cache/deeptrain`, file `sgemm-peak.json`.
package enum SgemmPeak {
    package struct Entry: Codable, Sendable, Equatable {
        package let cpu: String
        package let kernel: String
        package let openblas: String
        package let threads: Int
        package let gflops: Double
        package let measuredAt: String

        /// Whether this figure was measured with the same CPU, kernel, OpenBLAS build and threads.
        func matches(_ key: (String, String, String, Int)) -> Bool {
            cpu == key.0 && kernel == key.1 && openblas == key.2 && threads == key.3
        }

        enum CodingKeys: String, CodingKey {
            case cpu
            case kernel
            case openblas
            case threads
            case gflops
            case measuredAt = "measured_at"
        }
    }

    package static var cacheFile: String {
        let env = ProcessInfo.processInfo.environment
        let dir = env["DEEPTRAIN_CACHE_DIR"] ?? ((env["XDG_CACHE_HOME"] ?? (NSHomeDirectory() + "/.cache")) + "/deeptrain")
        return dir + "/sgemm-peak.json"
    }

    static func key(threads: Int) -> (String, String, String, Int) {
        let k = KernelSelection.current
        return (k.cpu, k.kernel, KernelSelection.openblasConfig, threads)
    }

    static func load() -> [Entry] {
        guard let data = FileManager.default.contents(atPath: cacheFile),
              let entries = try? JSONDecoder().decode([Entry].self, from: data) else { return [] }
        return entries
    }

    package static func cached(threads: Int) -> Entry? {
        let k = key(threads: threads)
        return load().last { $0.matches(k) }
    }

    /// The peak at `threads`: the cached figure, or a measurement (about 1–3 s) that is cached.
    package static func gflops(threads: Int) -> Double {
        if let e = cached(threads: threads) { return e.gflops }
        return measure(threads: threads).entry.gflops
    }

    /// Below this share of its cores, a measurement ran on a busy machine (other processes took
    /// cores from it): it is used for the run but not cached. Unloaded, 1 or 2 threads get
    /// ≥ 0.95 here; beside one other busy process on 2 cores, about 0.5.
    static let busyShare = 0.85

    /// Measures now (2048², best of 10) and replaces the cached figure, unless the machine was
    /// busy: a figure measured beside other work would stay in the cache and inflate every later
    /// MFU, so it is used once, with a warning, and measured again next time (`busy` says so).
    /// A cache that cannot be written is only a cost: the next run measures again.
    @discardableResult
    package static func measure(threads: Int) -> (entry: Entry, busy: Bool) {
        let (cpu, kernel, openblas, t) = key(threads: threads)
        let (g, share) = sgemmMeasurement(threads: threads)
        let e = Entry(cpu: cpu, kernel: kernel, openblas: openblas, threads: t, gflops: g,
                      measuredAt: ISO8601DateFormatter().string(from: Date()))
        guard share >= busyShare else {
            FileHandle.standardError.write(Data(String(format: "warning: the machine was busy while the sgemm peak was measured (this process got %.0f%% of %d core(s)): %.1f GFLOP/s is used for this run's MFU but not cached; measure again on a quiet machine with `deeptrain env --measure`\n", 100 * share, threads, g).utf8))
            return (e, true)
        }
        var entries = load().filter { !$0.matches((cpu, kernel, openblas, t)) }
        entries.append(e)
        let dir = (cacheFile as NSString).deletingLastPathComponent
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        if (try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)) != nil,
           let data = try? enc.encode(entries) {
            // Atomic: ranks or runs reading it meanwhile see the old or the new file.
            let tmp = cacheFile + ".tmp.\(getpid())"
            if FileManager.default.createFile(atPath: tmp, contents: data) { rename(tmp, cacheFile) }
        }
        return (e, false)
    }

    /// One measurement, not cached: cblas_sgemm on 2048² matrices at `threads`, best of 10
    /// (best-of, because other tenants of a shared machine only ever slow a run down).
    package static func sgemmGFLOPS(threads: Int, n: Int = 2048, repeats: Int = 10) -> Double {
        sgemmMeasurement(threads: threads, n: n, repeats: repeats).gflops
    }

    /// The measurement and the share of `threads` cores this process got meanwhile (its CPU
    /// time over wall time × threads): well below 1, other processes were running too.
    static func sgemmMeasurement(threads: Int, n: Int = 2048, repeats: Int = 10) -> (gflops: Double, cpuShare: Double) {
        let saved = Threads.count
        defer { Threads.set(saved) }
        Threads.set(threads)
        let a = Tensor.rand([n, n], rng: Philox(seed: 7, purpose: "bench-gemm")), b = Tensor.rand([n, n], rng: Philox(seed: 8, purpose: "bench-gemm"))
        let c = Tensor(zeros: [n, n])
        var best = Double.infinity, wall = 0.0, cpu = 0.0
        for i in 0...repeats {
            let t0 = now(), c0 = processCPUSeconds()
            // OpenBLAS's own threads: the peak is OpenBLAS's, whatever DeepTrain does with its cores.
            Threads.withBLASThreads(threads) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n), 1, a.data, Int32(n), b.data, Int32(n), 0, c.data, Int32(n))
            }
            if i > 0 {  // the first call warms up
                let dt = now() - t0
                best = Swift.min(best, dt)
                wall += dt
                cpu += processCPUSeconds() - c0
            }
        }
        return (2 * Double(n) * Double(n) * Double(n) / best / 1e9, cpu / (wall * Double(Swift.max(threads, 1))))
    }

    /// User + system CPU seconds of every thread of this process.
    static func processCPUSeconds() -> Double {
        var u = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u)
        return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6
    }

    /// The peak of a job: ranks × one rank's peak at `threads`. Rank 0 reads the cache or
    /// measures while the other ranks wait (ranks measuring at once would share the cores and
    /// each see a fraction), then every rank gets the same figure.
    package static func job(world: Communicator, threads: Int) throws -> Double {
        var g = [world.rank == 0 ? gflops(threads: threads) : 0]
        try world.broadcast(&g, root: 0)
        return g[0] * Double(world.size)
    }
}
