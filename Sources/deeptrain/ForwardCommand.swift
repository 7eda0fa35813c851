import ArgumentParser
import Foundation
import DeepSeek
import Checkpoint
import Training

struct ForwardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forward",
        abstract: "One batch forward (and backward) dumping logits, hidden states, routing and gradients (docs/design.md §5).")

    @Option(help: "A DeepTrain checkpoint (.h5) or a Hugging Face model directory.") var model: String
    @Option(help: "safetensors with input_ids (int64 [B, T]) and optional labels.") var input: String
    @Option(help: "Output safetensors file.") var dump: String
    @Flag(help: "Also dump grad.<name> for every parameter (gradient of the plain cross-entropy).") var grads = false

    func run() throws {
        let file = try SafeTensorsFile(path: input)
        let t = file.entries["input_ids"]?.shape.last ?? 1
        let m = try loadModel(model, positions: Swift.max(t, 1))
        try ForwardDump.run(model: m, input: input, output: dump, grads: grads)
        print("wrote \(dump)")
    }
}
