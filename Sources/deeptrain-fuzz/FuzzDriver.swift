#if !LIBFUZZER
import ArgumentParser
import Foundation
import FuzzTargets

/// `deeptrain-fuzz`: an in-process mutation fuzzer for DeepTrain's file parsers, and the
/// replay of every committed input. `make fuzz` runs it (or libFuzzer, when the toolchain
/// builds it: scripts/fuzz); docs/security.md has the results.
@main
struct FuzzDriver: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deeptrain-fuzz",
        abstract: "Fuzz DeepTrain's file parsers, or replay their corpora.",
        subcommands: [Run.self, Replay.self, Seeds.self, List.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The targets, one per line.")
        func run() { for t in FuzzTarget.allCases { print(t.rawValue) } }
    }

    struct Seeds: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write the generated corpus and binary regression inputs under Tests/Fuzz.")
        @Option(help: "The repository root.") var root = "."
        func run() throws { try FuzzSeeds.writeAll(root: root) }
    }

    struct Replay: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run every committed input of the targets once; print JSON per target.")
        @Option(help: "The repository root.") var root = "."
        @Option(help: "Replay only this file (with one target): a finding, to debug it.") var input: String?
        @Argument(help: "Targets (default: all).") var targets: [String] = []
        func run() throws {
            for t in try FuzzDriver.parse(targets) {
                let scratch = try FuzzScratch()
                let files = input.map { [$0] } ?? FuzzSeeds.files(t, root: root)
                let start = Date()
                var outcomes = Set<String>()
                for f in files { outcomes.insert(t.run(try Data(contentsOf: URL(fileURLWithPath: f)), scratch: scratch)) }
                print(#"{"target": "\#(t.rawValue)", "inputs": \#(files.count), "outcomes": \#(outcomes.count), "seconds": \#(String(format: "%.2f", Date().timeIntervalSince(start)))}"#)
            }
        }
    }

    static func parse(_ names: [String]) throws -> [FuzzTarget] {
        if names.isEmpty { return FuzzTarget.allCases }
        return try names.map { n in
            guard let t = FuzzTarget(rawValue: n) else {
                throw ValidationError("unknown target \(n); targets: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return t
        }
    }
}
#endif
