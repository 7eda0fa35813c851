import ArgumentParser
import Foundation
import DeepSeek
import Checkpoint
import Training
import Autograd

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Step, stage, config, tensors and a SHA-256 digest of the model weights of a checkpoint.",
        discussion: "Never allocates the model: tensors are read one at a time. An .h5 file is first checked by `deeptrain verify` in a child process (docs/security.md).")

    @Argument(help: "A DeepTrain .h5 checkpoint or a Hugging Face directory.") var checkpoint: String
    @Flag(help: "List every tensor with its shape.") var tensors = false

    func run() throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: checkpoint, isDirectory: &isDir) else { throw fail("\(checkpoint): does not exist") }
        // Tensor by tensor: a checkpoint of any size in the memory of its largest tensor.
        let config: DeepSeekConfig, state: CheckpointStore.State, tensor: (String) throws -> Tensor
        var reader: CheckpointStore.Reader? = nil
        defer { reader?.close() }
        if isDir.boolValue {
            let w = try HFDirectory.Weights(checkpoint)
            (config, state, tensor) = (w.config, CheckpointStore.State(routerBiases: try w.routerBiases()), w.tensor)
            try w.check(DeepSeekForCausalLM.parameterShapes(config))
        } else {
            let r = try CheckpointStore.Reader(checkpoint)
            reader = r
            (config, state, tensor) = (r.config, r.state, r.tensor)
            try r.check(DeepSeekForCausalLM.parameterShapes(config))
        }
        let shapes = DeepSeekForCausalLM.parameterShapes(config)
        print("checkpoint   \(checkpoint)")
        if !isDir.boolValue {
            print("stage        \(state.stage.isEmpty ? "-" : state.stage) (index \(state.stageIndex)), step \(state.step), global step \(state.globalStep), tokens \(state.tokens)")
        }
        let c = config
        print("model        \(c.numHiddenLayers) layers, hidden \(c.hiddenSize), \(c.numAttentionHeads) heads, \(c.nSharedExperts) shared + \(c.nRoutedExperts) routed experts, vocab \(c.vocabSize)"
              + (c.isRewardModel ? "; a reward model (score head, docs/reward.md)" : ""))
        print("parameters   \(shapes.reduce(0) { $0 + $1.shape.reduce(1, *) }) in \(shapes.count) tensors")
        print("digest       sha256:\(try weightsDigest(names: shapes.map(\.name), tensor: tensor))")
        if !state.routerBiases.isEmpty {
            // V3's balancing biases: buffers, so outside the weights' digest.
            let biases = state.routerBiases.map { ($0.key, Tensor($0.value, shape: [$0.value.count])) }
            let largest = state.routerBiases.values.flatMap { $0 }.map(abs).max() ?? 0
            print("router bias  sha256:\(weightsDigest(biases)) (\(biases.count) layers, max |b| \(largest))")
        }
        if c.numNextnPredictLayers > 0 { print("mtp          \(c.numNextnPredictLayers) depth(s), layers \(c.numHiddenLayers)..<\(c.numHiddenLayers + c.numNextnPredictLayers)") }
        if tensors { for p in shapes { print("  \(p.name) \(p.shape)") } }
    }
}
