import Foundation
import Testing

/// The start-up kernel selection through the real binary: a simulated OpenBLAS fallback is
/// replaced by the CPU's best kernel after a self-check, a failing self-check falls back with a
/// warning, a user's OPENBLAS_CORETYPE is kept, and benchmarks name the kernel.
@Suite(.serialized) struct KernelSelectionCLITests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let binary = root.appendingPathComponent(".build/release/deeptrain").path

    /// Runs the binary as a fresh start would: without the selection state this test process
    /// inherited, and without an OPENBLAS_CORETYPE the suite may run under.
    func run(_ args: [String], env: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binary)
        p.arguments = args
        var e = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("DEEPTRAIN_BLAS_") && $0.key != "OPENBLAS_CORETYPE" }
        for (k, v) in env { e[k] = v }
        p.environment = e
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), r = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: r, as: UTF8.self))
    }

    func line(_ text: String, _ prefix: String) -> String {
        text.split(separator: "\n").first { $0.hasPrefix(prefix) }.map(String.init) ?? ""
    }

    @Test func aFallbackToPrescottIsReplacedAndVerified() throws {
        let plain = try run(["env"])
        #expect(plain.status == 0, "\(plain.stderr)")
        let best = line(plain.stdout, "kernel:").split(separator: " ")[1]
        let r = try run(["env"], env: ["DEEPTRAIN_BLAS_SIMULATE_DEFAULT": "Prescott"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(line(r.stdout, "kernel:") == "kernel:   \(best) (OpenBLAS's own choice: Prescott)", "\(r.stdout)")
        #expect(line(r.stdout, "why:").contains("selected \(best), sgemm self-check passed"), "\(r.stdout)")
    }

    @Test func aFailedSelfCheckFallsBackWithAWarning() throws {
        let r = try run(["env"], env: ["DEEPTRAIN_BLAS_SIMULATE_DEFAULT": "Prescott", "DEEPTRAIN_BLAS_FAULT": "self-check"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("warning:") && r.stderr.contains("failed its sgemm self-check") && r.stderr.contains("falling back to OpenBLAS's own choice Prescott"),
                "\(r.stderr)")
        #expect(line(r.stdout, "kernel:").hasPrefix("kernel:   Prescott"), "\(r.stdout)")
    }

    @Test func theUsersCoretypeIsNeverOverridden() throws {
        let r = try run(["env"], env: ["OPENBLAS_CORETYPE": "Prescott"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(line(r.stdout, "kernel:") == "kernel:   Prescott (OPENBLAS_CORETYPE from the environment)", "\(r.stdout)")
        #expect(line(r.stdout, "why:").contains("never overrides it"))
    }

    /// A peak measured while other processes hold the cores would inflate every later MFU if it
    /// were cached: with a busy shell loop on every core, `env --measure` warns and leaves the
    /// cache alone.
    @Test func aPeakMeasuredOnABusyMachineIsNotCached() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("peak-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let spinners = try (0..<ProcessInfo.processInfo.activeProcessorCount).map { _ in
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", "while :; do :; done"]
            try p.run()
            return p
        }
        // SIGKILL: the test runner's children may inherit a blocked SIGTERM (terminate() left
        // these loops running).
        defer { spinners.forEach { kill($0.processIdentifier, SIGKILL); $0.waitUntilExit() } }
        let r = try run(["env", "--measure"], env: ["DEEPTRAIN_CACHE_DIR": dir])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("the machine was busy while the sgemm peak was measured"), "\(r.stderr)")
        #expect(line(r.stdout, "peak:").contains("not cached"), "\(r.stdout)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/sgemm-peak.json"))
    }

    @Test func benchmarksNameTheKernel() throws {
        let r = try run(["bench", "attention", "--batch", "1", "--length", "16", "--heads", "2", "--threads", "1"],
                        env: ["OPENBLAS_CORETYPE": "Prescott"])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        #expect(json?["blas_kernel"] as? String == "Prescott", "\(r.stdout)")
    }
}
