import Foundation
import Testing

/// The CLI facing files it did not write: a crash inside libhdf5 while reading one is contained
/// in the checking child process, and a failed conversion leaves nothing behind.
@Suite(.serialized) struct HostileFileCLITests {
    static let binary = TrainCLITests.binary
    static let fixture = TrainCLITests.root.appendingPathComponent("Tests/Fixtures/deepseek/qlora_group_limited").path

    func tempDir() -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("dt-hostile-cli-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    @Test func aCrashWhileCheckingACheckpointBecomesAClearError() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let convert = try CommandRun(Self.binary, ["convert", Self.fixture, "\(dir)/ck.h5"])
        #expect(convert.status == 0, "\(convert.stderr)")
        let ok = try CommandRun(Self.binary, ["verify", "\(dir)/ck.h5"])
        #expect(ok.status == 0 && ok.stdout.hasPrefix("ok: "), "\(ok.stdout)\(ok.stderr)")
        // The checking child dies by SIGSEGV, as it would inside libhdf5 on a corrupt file.
        for args in [["inspect", "\(dir)/ck.h5"], ["convert", "\(dir)/ck.h5", "\(dir)/hf"]] {
            let r = try CommandRun(Self.binary, args, environment: ["DEEPTRAIN_FAULT_VERIFY_SIGNAL": "11"])
            #expect(r.status == 1, "\(args): \(r.status) \(r.stderr)")
            #expect(r.stderr.contains("libhdf5 crashed (signal 11)") && r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["ck.h5"])
    }

    @Test func aDamagedCheckpointGetsOneMessageAndNoOutput() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let convert = try CommandRun(Self.binary, ["convert", Self.fixture, "\(dir)/ck.h5"])
        #expect(convert.status == 0, "\(convert.stderr)")
        // Cut the file short: its last datasets lose their bytes.
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: "\(dir)/ck.h5"))
        let size = try h.seekToEnd()
        try h.truncate(atOffset: size * 2 / 3)
        try h.close()
        let r = try CommandRun(Self.binary, ["convert", "\(dir)/ck.h5", "\(dir)/hf"])
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.hasPrefix("error: \(dir)/ck.h5") && r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["ck.h5"])
    }

    /// Files that make libhdf5 itself read out of bounds (found by libFuzzer with ASan,
    /// Tests/Fuzz/libhdf5): never read in the test process, only through the CLI, whose
    /// checking child process contains whatever libhdf5 does with them.
    @Test func filesThatBreakLibHDF5GetOneMessage() throws {
        let dir = TrainCLITests.root.appendingPathComponent("Tests/Fuzz/libhdf5").path
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".h5") }.sorted()
        #expect(!files.isEmpty)
        for f in files {
            let r = try CommandRun(Self.binary, ["inspect", "\(dir)/\(f)"])
            #expect(r.status == 1 && r.stderr.hasPrefix("error: ") && r.stderr.split(separator: "\n").count == 1, "\(f): \(r.status) \(r.stderr)")
        }
    }
}
