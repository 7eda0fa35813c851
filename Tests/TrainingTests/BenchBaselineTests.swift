import Foundation
import Testing
import Benchmarks

/// The regression guard: a baseline recorded from runs, and new runs judged against the
/// recorded runs' spread widened by `tolerance` (docs/benchmarks.md, "Regression guard").
@Suite struct BenchBaselineTests {
    func run(_ name: String, tokens: Double, forward: Double, model: String = "small", threads: Int = 2) -> (name: String, json: [String: Any]) {
        (name, ["benchmark": "train", "model": model, "batch": 8, "sequence_length": 256, "threads": threads, "ranks": 1,
                "blas_kernel": "Cooperlake", "cpu": "AMD family 25 model 17", "tokens_per_s": tokens, "forward_ms": forward,
                "step_ms": 800.0])
    }

    func baseline() throws -> BenchBaseline.File {
        let runs = [(100.0, 300.0), (104, 290), (96, 310), (101, 305), (99, 295)].enumerated().map { run("b\($0)", tokens: $1.0, forward: $1.1) }
        return try BenchBaseline.record(runs, into: BenchBaseline.File())
    }

    @Test func aRecordedEntryKeepsTheMedianAndTheSpread() throws {
        let f = try baseline()
        #expect(f.entries.count == 1)
        let e = f.entries[0]
        #expect(e.runs == 5 && e.key["model"] == "small" && e.key["cpu"] == "AMD family 25 model 17")
        #expect(e.figures["tokens_per_s"] == BenchBaseline.Stats(median: 100, min: 96, max: 104))
        #expect(e.figures["forward_ms"] == BenchBaseline.Stats(median: 300, min: 290, max: 310))
        #expect(e.figures["step_ms"] == nil && e.figures["mfu"] == nil)  // not watched, or absent from the runs
        // Recording the same kind again replaces the entry; another kind is added beside it.
        let again = try BenchBaseline.record([run("x", tokens: 50, forward: 1)], into: f)
        #expect(again.entries.count == 1 && again.entries[0].figures["tokens_per_s"]?.median == 50)
        let other = try BenchBaseline.record([run("d", tokens: 7, forward: 1, model: "dense")], into: f)
        #expect(other.entries.count == 2)
    }

    @Test func runsAreJudgedAgainstTheSpreadWidenedByTheTolerance() throws {
        let f = try baseline()
        // Median 95 tokens/s: inside 96 − 3 = 93; forward 312 inside 310 + 9.
        let inside = try BenchBaseline.compare([run("a", tokens: 95, forward: 312), run("b", tokens: 94, forward: 311), run("c", tokens: 97, forward: 313)],
                                               with: f, path: "b.json")
        #expect(inside.figures.map(\.verdict) == ["within noise", "within noise"] && inside.worse.isEmpty)
        // Slower: fewer tokens (worse), a longer forward (worse); faster: more tokens (better).
        let slow = try BenchBaseline.compare([run("a", tokens: 90, forward: 330)], with: f, path: "b.json")
        #expect(slow.worse == ["tokens_per_s", "forward_ms"])
        #expect(abs(slow.figures[0].changePercent + 10) < 1e-9 && slow.figures[0].noiseLow == 93)
        let fast = try BenchBaseline.compare([run("a", tokens: 110, forward: 250)], with: f, path: "b.json")
        #expect(fast.figures.map(\.verdict) == ["better", "better"] && fast.worse.isEmpty)
    }

    @Test func noBaselineForTheMachineKindSaysWhichItHasAndHowToRecord() throws {
        let f = try baseline()
        do {
            _ = try BenchBaseline.compare([run("a", tokens: 100, forward: 300, threads: 1)], with: f, path: "docs/baselines.json")
            Issue.record("compared against another machine kind's entry")
        } catch let p as BenchBaseline.Problem {
            #expect(p.description.contains("has no baseline for benchmark=train model=small") && p.description.contains("threads=1"))
            #expect(p.description.contains("threads=2") && p.description.contains("deeptrain bench baseline --output docs/baselines.json"))
        }
        #expect(throws: BenchBaseline.Problem.self) {
            _ = try BenchBaseline.compare([run("a", tokens: 1, forward: 1), run("b", tokens: 1, forward: 1, model: "dense")], with: f, path: "x")
        }
        #expect(throws: BenchBaseline.Problem.self) { _ = try BenchBaseline.compare([("n", ["tokens_per_s": 1.0])], with: f, path: "x") }
    }

    /// The commands: `bench baseline` writes the file, `bench compare` exits 0, 2 or 1.
    @Test func theCommandsRecordAndCompare() throws {
        let dir = NSTemporaryDirectory() + "bench-baseline-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func write(_ r: (name: String, json: [String: Any])) throws -> String {
            let path = "\(dir)/\(r.name).json"
            try JSONSerialization.data(withJSONObject: r.json).write(to: URL(fileURLWithPath: path))
            return path
        }
        let base = try [(100.0, "b1"), (102, "b2"), (98, "b3")].map { try write(run($0.1, tokens: $0.0, forward: 300)) }
        let file = "\(dir)/baselines.json"
        let recorded = try CommandRun(TrainCLITests.binary, ["bench", "baseline", "--output", file] + base)
        #expect(recorded.status == 0, "\(recorded.stderr)")
        let same = try CommandRun(TrainCLITests.binary, ["bench", "compare", "--baseline", file, try write(run("n1", tokens: 99, forward: 301))])
        #expect(same.status == 0 && same.stdout.contains("\"within noise\""), "\(same.stderr)")
        let slow = try CommandRun(TrainCLITests.binary, ["bench", "compare", "--baseline", file, try write(run("n2", tokens: 80, forward: 301))])
        #expect(slow.status == 2 && slow.stderr.contains("tokens_per_s: worse, -20.0%"), "\(slow.status) \(slow.stderr)")
        let other = try CommandRun(TrainCLITests.binary, ["bench", "compare", "--baseline", file, try write(run("n3", tokens: 80, forward: 1, threads: 1))])
        #expect(other.status == 1 && other.stderr.contains("has no baseline"), "\(other.status) \(other.stderr)")
    }
}
