import ArgumentParser
import Foundation
import DeepSeek
import Checkpoint
import Training

struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Hugging Face directory (config.json + safetensors) ⇄ DeepTrain HDF5 checkpoint.",
        discussion: """
            The direction follows the source: a directory becomes an .h5 checkpoint, an .h5 checkpoint \
            becomes a directory. Weights are read as F32, BF16 or F16 (one model.safetensors, or shards \
            listed in model.safetensors.index.json) and kept as float32 in the checkpoint; a directory is \
            written in --dtype, sharded at --max-shard-size with an index, as save_pretrained writes it. \
            The tokenizer files that came with the model (tokenizer.json, tokenizer_config.json, \
            chat_template.jinja, special_tokens_map.json, generation_config.json, ...) travel inside \
            the checkpoint and come out again beside the weights.

            Sources are untrusted (docs/security.md): config.json sizes are bounded and checked \
            against the tensors' shapes; an .h5 source is first read whole by `deeptrain verify` in \
            a child process, so a file that crashes libhdf5 is an error here. A directory \
            destination is written under a temporary name and renamed at the end (an existing one \
            is replaced only if it holds nothing but model files).
            """)

    @Argument(help: "Source: a Hugging Face model directory or a DeepTrain .h5 checkpoint.") var source: String
    @Argument(help: "Destination: an .h5 path, or a directory.") var destination: String
    @Option(help: "When writing a directory: the largest shard, e.g. 5GB, 500MB, 2GiB or bytes.") var maxShardSize = "5GB"
    @Option(help: "When writing a directory: the weights' dtype, f32 or bf16.") var dtype = "f32"

    func run() throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: source, isDirectory: &isDir) else { throw fail("\(source): does not exist") }
        guard let shardBytes = HFDirectory.parseSize(maxShardSize) else {
            throw fail("--max-shard-size \(maxShardSize): expected a size such as 5GB, 500MB, 2GiB or a number of bytes")
        }
        guard let type = HFDirectory.DType(rawValue: dtype.lowercased()) else { throw fail("--dtype \(dtype): expected f32 or bf16") }
        if isDir.boolValue {
            guard destination.hasSuffix(".h5") else { throw fail("\(destination): converting a directory needs an .h5 destination") }
            // Tensor by tensor: memory for the largest tensor, not the model.
            let weights = try HFDirectory.Weights(source)
            let parameters = DeepSeekForCausalLM.parameterShapes(weights.config)
            try weights.check(parameters)
            let files = try HFDirectory.tokenizerFiles(source)
            try CheckpointStore.save(config: weights.config, parameters: parameters,
                                     state: CheckpointStore.State(routerBiases: try weights.routerBiases()),
                                     tokenizerFiles: files, to: destination, tensor: weights.tensor)
            if weights.droppedMTP { print("note: config.json promises MTP depths but the files hold none: converted with MTP off") }
            print("wrote \(destination) (tokenizer files: \(files.isEmpty ? "none" : files.map(\.0).joined(separator: ", ")))")
        } else {
            let reader = try CheckpointStore.Reader(source)
            defer { reader.close() }
            let parameters = DeepSeekForCausalLM.parameterShapes(reader.config)
            try reader.check(parameters)
            let files = try CheckpointStore.tokenizerFiles(source)
            try HFDirectory.save(config: reader.config, parameters: parameters, to: destination, shardBytes: shardBytes, dtype: type,
                                 tokenizerFiles: files, routerBiases: reader.state.routerBiases, tensor: reader.tensor)
            let shards = ((try? FileManager.default.contentsOfDirectory(atPath: destination)) ?? []).filter { $0.hasSuffix(".safetensors") }.count
            print("wrote \(destination) (\(shards) safetensors file\(shards == 1 ? "" : "s"), \(type.rawValue), tokenizer files: \(files.isEmpty ? "none" : files.map(\.0).joined(separator: ", ")))")
        }
    }
}
