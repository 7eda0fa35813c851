import Foundation
import Checkpoint
import DeepSeek

/// A private directory for the inputs of targets whose parsers read paths, and the small valid
/// model directory the index target needs beside its input.
package final class FuzzScratch {
    package let dir: String
    var model: String?

    package init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("deeptrain-fuzz-\(getpid())-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }

    func write(_ data: Data, as name: String) throws -> String {
        let path = (dir as NSString).appendingPathComponent(name)
        try data.write(to: URL(fileURLWithPath: path))
        return path
    }

    /// The micro model (`FuzzSeeds.microConfig`) as a Hugging Face directory in two shards.
    func modelDirectory() throws -> String {
        if let model { return model }
        let path = (dir as NSString).appendingPathComponent("model")
        try HFDirectory.save(DeepSeekForCausalLM(FuzzSeeds.microConfig, seed: 1, positions: 4), to: path, shardBytes: 2_000)
        model = path
        return path
    }
}
