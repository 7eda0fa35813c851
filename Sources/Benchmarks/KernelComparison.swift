import Foundation
import Autograd

/// `deeptrain bench gemm --kernels`: the same sgemm sizes under every OpenBLAS kernel this CPU
/// can execute, each in a child process (OpenBLAS fixes its kernel when it loads), and the
/// kernel in use against the fastest of them — the check that the start-up selection did not
/// leave speed behind.
package enum KernelComparison {
    package struct Row: Codable, Sendable {
        package let requested: String
        /// What OpenBLAS ran (it substitutes a kernel the CPU cannot run).
        package let ran: String
        package let n: Int
        package let threads: Int
        package let sgemmGFLOPS: Double

        enum CodingKeys: String, CodingKey {
            case requested
            case ran
            case n
            case threads
            case sgemmGFLOPS = "sgemm_gflops"
        }
    }

    package struct Summary: Codable, Sendable {
        package let n: Int
        package let threads: Int
        package let inUseGFLOPS: Double
        package let fastestKernel: String
        package let fastestGFLOPS: Double
        package let inUseOverFastest: Double

        enum CodingKeys: String, CodingKey {
            case n
            case threads
            case inUseGFLOPS = "in_use_gflops"
            case fastestKernel = "fastest_kernel"
            case fastestGFLOPS = "fastest_gflops"
            case inUseOverFastest = "in_use_over_fastest"
        }
    }

    package struct Report: Codable, Sendable {
        package var benchmark = "gemm-kernels"
        package let cpu: String
        package let features: [String]
        package let blasKernel: String
        package let openblasChoice: String
        package let reason: String
        package let repeats: Int
        package let results: [Row]
        package let failed: [String: String]
        package let summary: [Summary]

        enum CodingKeys: String, CodingKey {
            case benchmark
            case cpu
            case features
            case blasKernel = "blas_kernel"
            case openblasChoice = "openblas_choice"
            case reason
            case repeats
            case results
            case failed
            case summary
        }
    }

    package static func run(sizes: [Int], threads: [Int], repeats: Int) throws -> Report {
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
                    let row = Row(requested: name == inUse ? k.kernel : name, ran: report.blasKernel, n: r.n, threads: r.threads,
                                  sgemmGFLOPS: r.sgemmGFLOPS)
                    if name == inUse { mine.append(row) } else { rows.append(row) }
                }
            }
        }
        var summary: [Summary] = []
        for m in mine {
            let same = rows.filter { $0.n == m.n && $0.threads == m.threads } + [m]
            let best = same.max { $0.sgemmGFLOPS < $1.sgemmGFLOPS }!
            summary.append(Summary(n: m.n, threads: m.threads, inUseGFLOPS: m.sgemmGFLOPS, fastestKernel: best.ran,
                                   fastestGFLOPS: best.sgemmGFLOPS, inUseOverFastest: m.sgemmGFLOPS / best.sgemmGFLOPS))
        }
        return Report(cpu: k.cpu, features: k.features, blasKernel: k.kernel, openblasChoice: k.openblasChoice, reason: k.reason,
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
