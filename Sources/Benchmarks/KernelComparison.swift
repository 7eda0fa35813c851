import Foundation
import Autograd

/// `deeptrain bench gemm --kernels`: the same sgemm sizes under every OpenBLAS kernel this CPU
/// can execute, each in a child process (OpenBLAS fixes its kernel when it loads), and the
/// kernel in use against the fastest of them — the check that the start-up selection did not
/// leave speed behind.
public enum KernelComparison {
    public struct Row: Codable, Sendable {
        public let requested: String
        /// What OpenBLAS ran (it substitutes a kernel the CPU cannot run).
        public let ran: String
        public let n: Int
        public let threads: Int
        public let sgemm_gflops: Double
    }

    public struct Summary: Codable, Sendable {
        public let n: Int
        public let threads: Int
        public let in_use_gflops: Double
        public let fastest_kernel: String
        public let fastest_gflops: Double
        public let in_use_over_fastest: Double
    }

    public struct Report: Codable, Sendable {
        public var benchmark = "gemm-kernels"
        public let cpu: String
        public let features: [String]
        public let blas_kernel: String
        public let openblas_choice: String
        public let reason: String
        public let repeats: Int
        public let results: [Row]
        public let failed: [String: String]
        public let summary: [Summary]
    }

    public static func run(sizes: [Int], threads: [Int], repeats: Int) throws -> Report {
        let k = KernelSelection.current
        var rows: [Row] = [], mine: [Row] = [], failed: [String: String] = [:]
        // The kernel in use runs as a child too, so that every figure comes from a fresh process.
        let inUse = "in use (\(k.kernel))"
        for name in [inUse] + KernelSelection.candidates() {
            var env = ProcessInfo.processInfo.environment
            if name != inUse {
                env["OPENBLAS_CORETYPE"] = name
                for key in env.keys where key.hasPrefix("DEEPTRAIN_BLAS_") { env[key] = nil }
            }
            let args = ["bench", "gemm", "--sizes"] + sizes.map(String.init) + ["--threads"] + threads.map(String.init) + ["--repeats", "\(repeats)"]
            FileHandle.standardError.write(Data("bench gemm --kernels: \(name)…\n".utf8))
            switch child(args, environment: env) {
            case .failure(let message):
                failed[name] = message
            case .success(let report):
                for r in report.results {
                    let row = Row(requested: name == inUse ? k.kernel : name, ran: report.blas_kernel, n: r.n, threads: r.threads,
                                  sgemm_gflops: r.sgemm_gflops)
                    if name == inUse { mine.append(row) } else { rows.append(row) }
                }
            }
        }
        var summary: [Summary] = []
        for m in mine {
            let same = rows.filter { $0.n == m.n && $0.threads == m.threads } + [m]
            let best = same.max { $0.sgemm_gflops < $1.sgemm_gflops }!
            summary.append(Summary(n: m.n, threads: m.threads, in_use_gflops: m.sgemm_gflops, fastest_kernel: best.ran,
                                   fastest_gflops: best.sgemm_gflops, in_use_over_fastest: m.sgemm_gflops / best.sgemm_gflops))
        }
        return Report(cpu: k.cpu, features: k.features, blas_kernel: k.kernel, openblas_choice: k.openblasChoice, reason: k.reason,
                      repeats: repeats, results: mine + rows, failed: failed, summary: summary)
    }

    enum Outcome { case success(GemmBenchmark.Report), failure(String) }

    static func child(_ args: [String], environment: [String: String]) -> Outcome {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        p.arguments = args
        p.environment = environment
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        do { try p.run() } catch { return .failure("could not start: \(error)") }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        if p.terminationReason == .uncaughtSignal {
            return .failure("killed by signal \(p.terminationStatus)" + (p.terminationStatus == SIGILL ? " (illegal instruction)" : ""))
        }
        guard p.terminationStatus == 0, let r = try? JSONDecoder().decode(GemmBenchmark.Report.self, from: data) else {
            return .failure("exit \(p.terminationStatus): " + errText.trimmingCharacters(in: .whitespacesAndNewlines).suffix(200))
        }
        return .success(r)
    }
}
