import Foundation

/// The regression guard (docs/benchmarks.md, "Regression guard"): a stored baseline of a
/// benchmark's figures on one machine kind, each with the spread of the runs it was recorded
/// from, and a comparison of new runs against it that says which figures moved beyond that
/// noise and which way.
///
/// A run is the JSON a `bench` command printed. Runs are matched to a baseline entry by what
/// decides their figures: the benchmark, its settings and the machine kind (CPU, BLAS kernel,
/// threads, ranks). Figures are the medians over the runs given, on both sides: one run of a
/// shared VM moves by up to 13%, the median of five by a few percent.
package enum BenchBaseline {
    /// A figure the guard watches, and which way is better.
    package struct Figure: Sendable {
        package let name: String
        package let higherIsBetter: Bool
    }

    package static let figures: [Figure] = [
        Figure(name: "tokens_per_s", higherIsBetter: true),
        Figure(name: "mfu", higherIsBetter: true),
        Figure(name: "forward_ms", higherIsBetter: false),
        Figure(name: "backward_ms", higherIsBetter: false),
        Figure(name: "optimizer_ms", higherIsBetter: false),
        Figure(name: "peak_rss_mb", higherIsBetter: false),
    ]

    /// The fields that say which entry a run belongs to.
    package static let keyFields = ["benchmark", "model", "batch", "sequence_length", "threads", "ranks", "comm_dtype", "precision", "blas_kernel", "cpu"]

    /// Beyond the recorded runs' own spread, this share of the median also counts as noise:
    /// medians of five runs of the same build on these VMs differ by up to about 3%
    /// (docs/benchmarks.md).
    package static let tolerance = 0.03

    package struct Stats: Codable, Sendable, Equatable {
        package var median: Double
        package var min: Double
        package var max: Double
        package init(median: Double, min: Double, max: Double) { self.median = median; self.min = min; self.max = max }
    }

    package struct Entry: Codable, Sendable {
        package var key: [String: String]
        package var runs: Int
        package var recorded: String
        package var figures: [String: Stats]
    }

    package struct File: Codable, Sendable {
        package var about = "DeepTrain benchmark baselines: `deeptrain bench compare` reads them, `deeptrain bench baseline` records them (docs/benchmarks.md)"
        package var entries: [Entry] = []
        package init() {}
    }

    /// One figure's comparison.
    package struct Movement: Codable, Sendable {
        package let figure: String
        package let baseline: Double
        package let noiseLow: Double
        package let noiseHigh: Double
        package let now: Double
        package let changePercent: Double
        /// `within noise`, `better` or `worse`.
        package let verdict: String

        enum CodingKeys: String, CodingKey {
            case figure, baseline, now, verdict
            case noiseLow = "noise_low"
            case noiseHigh = "noise_high"
            case changePercent = "change_percent"
        }
    }

    package struct Report: Codable, Sendable {
        package let benchmark = "compare"
        package let key: [String: String]
        package let baselineRuns: Int
        package let baselineRecorded: String
        package let runs: Int
        package let figures: [Movement]
        package var worse: [String] { figures.filter { $0.verdict == "worse" }.map(\.figure) }

        enum CodingKeys: String, CodingKey {
            case benchmark, key, runs, figures
            case baselineRuns = "baseline_runs"
            case baselineRecorded = "baseline_recorded"
        }
    }

    package struct Problem: Error, CustomStringConvertible {
        package let description: String
        init(_ d: String) { description = d }
    }

    /// A run's key: its values of `keyFields`, as text (absent fields are left out).
    package static func key(of run: [String: Any]) -> [String: String] {
        var out: [String: String] = [:]
        for f in keyFields {
            guard let v = run[f] else { continue }
            if let n = v as? NSNumber { out[f] = n.stringValue } else { out[f] = "\(v)" }
        }
        return out
    }

    /// The runs' common key, or why they have none.
    static func commonKey(_ runs: [(name: String, json: [String: Any])]) throws -> [String: String] {
        guard let first = runs.first else { throw Problem("no runs given") }
        let k = key(of: first.json)
        guard k["benchmark"] != nil else { throw Problem("\(first.name): not a bench JSON (no \"benchmark\" field)") }
        for r in runs.dropFirst() where key(of: r.json) != k {
            throw Problem("\(r.name) is not the same benchmark on the same machine kind as \(first.name): \(describe(key(of: r.json))) against \(describe(k))")
        }
        return k
    }

    static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// The figures each run has, as stats over the runs.
    static func stats(_ runs: [(name: String, json: [String: Any])]) -> [String: Stats] {
        var out: [String: Stats] = [:]
        for f in figures {
            let xs = runs.compactMap { ($0.json[f.name] as? NSNumber)?.doubleValue }.filter(\.isFinite)
            guard xs.count == runs.count, !xs.isEmpty else { continue }
            out[f.name] = Stats(median: median(xs), min: xs.min()!, max: xs.max()!)
        }
        return out
    }

    /// `file` with the entry for these runs' key recorded anew (replacing an older one).
    package static func record(_ runs: [(name: String, json: [String: Any])], into file: File, date: Date = Date()) throws -> File {
        let k = try commonKey(runs)
        var f = file
        f.entries.removeAll { $0.key == k }
        f.entries.append(Entry(key: k, runs: runs.count, recorded: ISO8601DateFormatter().string(from: date), figures: stats(runs)))
        f.entries.sort { describe($0.key) < describe($1.key) }
        return f
    }

    /// The runs against the baseline entry of their key.
    package static func compare(_ runs: [(name: String, json: [String: Any])], with file: File, path: String) throws -> Report {
        let k = try commonKey(runs)
        guard let entry = file.entries.first(where: { $0.key == k }) else {
            let kinds = file.entries.map { "  " + describe($0.key) }.joined(separator: "\n")
            throw Problem("\(path) has no baseline for \(describe(k)); it has:\n\(kinds.isEmpty ? "  (none)" : kinds)\n"
                          + "record one from runs of this machine: deeptrain bench baseline --output \(path) RUN.json ... (docs/benchmarks.md)")
        }
        let now = stats(runs)
        let moved = figures.compactMap { f -> Movement? in
            guard let b = entry.figures[f.name], let n = now[f.name]?.median else { return nil }
            let low = b.min - tolerance * b.median, high = b.max + tolerance * b.median
            let verdict: String
            if n >= low && n <= high { verdict = "within noise" } else { verdict = (n > high) == f.higherIsBetter ? "better" : "worse" }
            return Movement(figure: f.name, baseline: b.median, noiseLow: low, noiseHigh: high, now: n,
                            changePercent: b.median == 0 ? 0 : (n / b.median - 1) * 100, verdict: verdict)
        }
        return Report(key: k, baselineRuns: entry.runs, baselineRecorded: entry.recorded, runs: runs.count, figures: moved)
    }

    package static func describe(_ key: [String: String]) -> String {
        keyFields.compactMap { f in key[f].map { "\(f)=\($0)" } }.joined(separator: " ")
    }
}
