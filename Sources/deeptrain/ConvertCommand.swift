import ArgumentParser
import Foundation
import DeepSeek
import Checkpoint
import Training

struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Hugging Face directory (config.json + safetensors) ⇄ DeepTrain HDF5 checkpoint.",
        discussion: "The direction follows the source: a directory becomes an .h5 checkpoint, an .h5 checkpoint becomes a directory. Tensors are copied bit for bit.")

    @Argument(help: "Source: a Hugging Face model directory or a DeepTrain .h5 checkpoint.") var source: String
    @Argument(help: "Destination: an .h5 path, or a directory.") var destination: String

    func run() throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: source, isDirectory: &isDir) else { fail("\(source): does not exist") }
        try reportingBadInput {
            if isDir.boolValue {
                guard destination.hasSuffix(".h5") else { fail("\(destination): converting a directory needs an .h5 destination") }
                let model = try HFDirectory.load(source, positions: 1)
                try CheckpointStore.save(model, to: destination)
            } else {
                let (model, _) = try CheckpointStore.load(source, positions: 1)
                try HFDirectory.save(model, to: destination)
            }
        }
        print("wrote \(destination)")
    }
}
