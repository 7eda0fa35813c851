#if !LIBFUZZER
import ArgumentParser
import Foundation
import FuzzTargets

extension FuzzDriver {
    /// The mutation loop: inputs from the target's seeds, mutated, run in this process. A crash
    /// (a trap, a bad access, an allocation over --memory-mb) or an input running past
    /// --timeout is saved under --findings and ends the run with exit code 1.
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Fuzz one target for a while; print a JSON summary.")
        @Argument(help: "The target (deeptrain-fuzz list).") var target: String
        @Option(help: "How long to run.") var seconds = 60.0
        @Option(help: "An input running longer than this many seconds is a hang.") var timeout = 10.0
        @Option(help: "The address-space limit of this process, in MB: a runaway allocation fails as a crash.") var memoryMb = 8192
        @Option(help: "Largest input in bytes.") var maxLength = 1 << 20
        @Option(help: "Seed of the mutations.") var seed: UInt64 = 1
        @Option(help: "The repository root.") var root = "."
        @Option(help: "Where crashing and hanging inputs are written.") var findings = "Tests/Fuzz/findings"

        func run() throws {
            let t = try FuzzDriver.parse([target])[0]
            let seeds = try FuzzSeeds.files(t, root: root).map { Array(try Data(contentsOf: URL(fileURLWithPath: $0))) }
            guard !seeds.isEmpty else { throw ValidationError("no seed inputs for \(t.rawValue)") }
            let dir = (findings as NSString).appendingPathComponent(t.rawValue)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            CrashCapture.install(directory: dir, timeout: timeout, memoryMB: memoryMb)
            let scratch = try FuzzScratch()
            var mutator = Mutator(state: seed, dictionary: t.dictionary, maxLength: maxLength)
            var pool = seeds, outcomes = Set<String>(), executions = 0
            let start = Date()
            while Date().timeIntervalSince(start) < seconds {
                let input = mutator.mutate(pool[mutator.below(pool.count)], other: pool[mutator.below(pool.count)])
                CrashCapture.begin(input)
                let outcome = t.run(Data(input), scratch: scratch)
                CrashCapture.end()
                executions += 1
                // An input that reached a new kind of outcome is worth mutating further.
                if outcomes.insert(outcome).inserted && pool.count < 4096 { pool.append(input) }
            }
            let elapsed = Date().timeIntervalSince(start)
            print(#"{"target": "\#(t.rawValue)", "seconds": \#(Int(elapsed)), "executions": \#(executions), "executions_per_s": \#(Int(Double(executions) / elapsed)), "seeds": \#(seeds.count), "outcomes": \#(outcomes.count), "findings": 0}"#)
        }
    }
}
#endif
