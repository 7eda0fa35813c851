import ArgumentParser
import Foundation
import Autograd
import DeepSeek
import Checkpoint
import Training

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Held-out loss and task accuracy of a checkpoint.")

    @Argument(help: "A DeepTrain .h5 checkpoint or a Hugging Face directory.") var checkpoint: String
    @Option(help: "Data source.") var data = "synthetic:arithmetic"
    @Option(help: "Tokens per sequence.") var seqLen = 64
    @Option(help: "Held-out batches of 16 sequences for the loss.") var batches = 4
    @Option(help: "Held-out problems for exact match.") var samples = 200
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let model = try loadModel(checkpoint, positions: seqLen + 8)
        let source: DataSource
        do { source = try DataSource.open(data, vocab: model.config.vocabSize) } catch let e as RecipeError { fail("--data: \(e.message)") }
        let (loss, acc) = withNoGrad { () -> (Double, (Double, Int)?) in
            var total = 0.0
            for i in 0..<batches {
                let rows = source.heldOutRows(first: i * 16, count: 16, length: seqLen + 1)
                var ids: [Int] = [], targets: [Int] = []
                for r in 0..<16 {
                    ids += rows[(r * (seqLen + 1))..<(r * (seqLen + 1) + seqLen)]
                    targets += rows[(r * (seqLen + 1) + 1)..<((r + 1) * (seqLen + 1))]
                }
                let out = model.forward(ids, batch: 16, length: seqLen)
                total += Double(out.logits.reshape([16 * seqLen, model.config.vocabSize]).crossEntropy(targets: targets).item)
            }
            return (total / Double(Swift.max(batches, 1)), source.exactMatch(model: model, samples: samples))
        }
        if json {
            var d: [String: Any] = ["checkpoint": checkpoint, "data": data, "heldout_loss": loss]
            if let acc { d["exact_match"] = acc.0; d["samples"] = acc.1 }
            print(String(decoding: try JSONSerialization.data(withJSONObject: d, options: [.sortedKeys, .prettyPrinted]), as: UTF8.self))
        } else {
            print(String(format: "held-out loss %.4f nats/token", loss) + (acc.map { String(format: ", exact match %.1f%% of %d", 100 * $0.0, $0.1) } ?? ""))
        }
    }
}
