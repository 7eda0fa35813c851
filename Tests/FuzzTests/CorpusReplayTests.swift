import Foundation
import Testing
@testable import FuzzTargets

/// Every committed fuzzing input — the seeds and each input that ever crashed, hung or
/// over-allocated (Tests/Fuzz/regressions) — runs through its target again: a regression
/// crashes or hangs this test run. docs/security.md lists what they once did.
@Suite struct CorpusReplayTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    @Test(arguments: FuzzTarget.allCases)
    func everyCommittedInputGetsAnAnswer(_ target: FuzzTarget) throws {
        let files = FuzzSeeds.files(target, root: Self.root)
        #expect(!files.isEmpty, "no inputs for \(target.rawValue)")
        let scratch = try FuzzScratch()
        for f in files {
            let start = Date()
            _ = target.run(try Data(contentsOf: URL(fileURLWithPath: f)), scratch: scratch)
            // A hang would stop the suite; a slow one is named.
            #expect(Date().timeIntervalSince(start) < 10, "\(f) took \(Date().timeIntervalSince(start)) s")
        }
    }

    /// Each regression input is rejected with an error, not accepted: the checks that stopped
    /// it are still there. Inputs named `accept-*` once crashed but are valid (jinja2 renders
    /// them): for them only the absence of a crash counts.
    @Test(arguments: FuzzTarget.allCases)
    func regressionsAreRejected(_ target: FuzzTarget) throws {
        let dir = (Self.root as NSString).appendingPathComponent("Tests/Fuzz/regressions/\(target.rawValue)")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        let scratch = try FuzzScratch()
        for name in names.sorted() where !name.hasPrefix(".") && !name.hasPrefix("accept-") {
            let outcome = target.run(try Data(contentsOf: URL(fileURLWithPath: (dir as NSString).appendingPathComponent(name))), scratch: scratch)
            #expect(outcome != "ok", "\(target.rawValue)/\(name) was accepted")
        }
    }
}
