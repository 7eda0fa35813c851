import Foundation
import DeepSeek
import Checkpoint
import Training

import Data
import FileSafety

/// Loads a model from a Hugging Face directory (config.json + safetensors) or builds a preset
/// with random weights; reports bad input as one line and exit code 1. `mtp: false` (generate,
/// eval): V3's multi-token-prediction depths are left out, unread.
func loadModel(_ spec: String, positions: Int, seed: UInt64 = 0, mtp: Bool = true) throws -> DeepSeekForCausalLM {
    var isDir: ObjCBool = false
    if FileManager.default.fileExists(atPath: spec, isDirectory: &isDir) {
        if isDir.boolValue { return try HFDirectory.load(spec, positions: positions, mtp: mtp) }
        return try CheckpointStore.load(spec, positions: positions, mtp: mtp).0
    }
    if DeepSeekConfig.presetNames.contains(spec) {
        var c = try DeepSeekConfig.preset(spec)
        if !mtp { c.numNextnPredictLayers = 0 }
        return DeepSeekForCausalLM(c, seed: seed, positions: positions)
    }
    throw CheckpointError(spec, "is neither a DeepTrain checkpoint (.h5), a Hugging Face model directory nor a preset (\(DeepSeekConfig.presetNames.joined(separator: ", ")))")
}

/// The chat tokenizer of `--chat`: `--tokenizer`, the model directory's files, or the files a
/// checkpoint carries (/tokenizer).
func loadChatTokenizer(checkpoint: String, tokenizer: String?) throws -> ChatTokenizer {
    if let tokenizer { return try ChatTokenizer(path: tokenizer) }
    var isDir: ObjCBool = false
    if FileManager.default.fileExists(atPath: checkpoint, isDirectory: &isDir), isDir.boolValue { return try ChatTokenizer(path: checkpoint) }
    let files = try CheckpointStore.tokenizerFiles(checkpoint)
    guard !files.isEmpty else {
        throw TokenizerError(source: checkpoint, message: "carries no tokenizer files; give --tokenizer DIR for --chat")
    }
    return try ChatTokenizer(files: Dictionary(files, uniquingKeysWith: { a, _ in a }), directory: "\(checkpoint)/tokenizer")
}
