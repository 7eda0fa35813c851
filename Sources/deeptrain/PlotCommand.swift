import ArgumentParser
import Foundation
import FileSafety
import Autograd
import DeepSeek
import Checkpoint
import Training

struct PlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plot",
        abstract: "SVG charts of a run: loss and LR, balance losses, drop fraction, expert load per MoE layer.")

    @Argument(help: "A run directory (with metrics.jsonl).") var runDirectory: String
    @Option(help: "Output directory (default RUN/plots).") var out: String?

    func run() throws {
        let files = try Plot.run(metricsPath: (runDirectory as NSString).appendingPathComponent("metrics.jsonl"),
                                 outDir: out ?? (runDirectory as NSString).appendingPathComponent("plots"))
        for f in files { print(f) }
    }
}
