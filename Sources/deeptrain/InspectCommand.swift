import ArgumentParser
import Foundation
import DeepSeek
import Checkpoint
import Training

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Step, stage, config, tensors and a SHA-256 digest of the model weights of a checkpoint.")

    @Argument(help: "A DeepTrain .h5 checkpoint or a Hugging Face directory.") var checkpoint: String
    @Flag(help: "List every tensor with its shape.") var tensors = false

    func run() throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: checkpoint, isDirectory: &isDir) else { fail("\(checkpoint): does not exist") }
        let (model, state) = try reportingBadInput { () -> (DeepSeekV2ForCausalLM, CheckpointStore.State) in
            if isDir.boolValue { return (try HFDirectory.load(checkpoint, positions: 1), CheckpointStore.State()) }
            return try CheckpointStore.load(checkpoint, positions: 1)
        }
        let named = model.namedParameters()
        print("checkpoint   \(checkpoint)")
        if !isDir.boolValue {
            print("stage        \(state.stage.isEmpty ? "-" : state.stage) (index \(state.stageIndex)), step \(state.step), global step \(state.globalStep), tokens \(state.tokens)")
        }
        let c = model.config
        print("model        \(c.numHiddenLayers) layers, hidden \(c.hiddenSize), \(c.numAttentionHeads) heads, \(c.nSharedExperts) shared + \(c.nRoutedExperts) routed experts, vocab \(c.vocabSize)")
        print("parameters   \(model.parameterCount) in \(named.count) tensors")
        print("digest       sha256:\(weightsDigest(named))")
        if tensors { for (n, t) in named { print("  \(n) \(t.shape)") } }
    }
}
