import ArgumentParser
import Foundation
import Autograd
import Training

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Train the tiny dense decoder on built-in decimal addition and print a summary.")

    @Option(help: "Optimizer steps.") var steps = 600
    @Option(help: "Sequences per step.") var batch = 16
    @Option(help: "Tokens per sequence.") var length = 64
    @Option(help: "Peak learning rate (cosine schedule with warmup).") var lr = 3e-3
    @Option(help: "Seed for initialisation and data order.") var seed: UInt64 = 1234
    @Option(help: "Threads for BLAS and fused loops.") var threads = 2
    @Option(help: "Write the summary as JSON to this file too.") var summaryJson: String?

    func validate() throws {
        guard steps > 0, batch > 0, length > 1, length <= 64, lr > 0, threads > 0 else {
            throw ValidationError("--steps, --batch, --lr, --threads must be positive and --length in 2...64")
        }
    }

    func run() throws {
        Threads.set(threads)
        var o = DenseDemo.Options()
        o.steps = steps
        o.batch = batch
        o.length = length
        o.lr = lr
        o.seed = seed
        let s = DenseDemo.run(o) { print($0); fflush(nil) }
        let rule = String(repeating: "─", count: 58)
        print("""
        \(rule)
         DeepTrain dense demo: decimal addition, byte-level tokens
        \(rule)
         parameters                 \(s.parameters)
         steps                      \(s.steps)  (\(String(format: "%.1f", s.seconds)) s, \(String(format: "%.0f", s.tokensPerSecond)) tokens/s)
         unigram baseline           \(String(format: "%.3f", s.unigramBaselineNats)) nats/token
         held-out loss              \(String(format: "%.3f", s.heldoutLossInitial)) → \(String(format: "%.3f", s.heldoutLossFinal)) nats/token
         held-out exact match       \(String(format: "%.1f%%", 100 * s.heldoutExactMatch)) of \(s.heldoutSamples) unseen sums
        \(rule)
        """)
        if let path = summaryJson {
            try jsonString(s).write(toFile: path, atomically: true, encoding: .utf8)
        }
    }
}
