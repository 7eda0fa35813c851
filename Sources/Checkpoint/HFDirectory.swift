import Foundation
import Autograd
import DeepSeek

/// A Hugging Face model directory: `config.json` plus weights in `model.safetensors` or in
/// shards listed by `model.safetensors.index.json`, under the DeepSeek-V2 tensor names.
public enum HFDirectory {
    /// Reads the config and builds the model with the directory's weights. Every parameter
    /// must be present with its shape; a tensor the model does not have is an error too (it
    /// would mean a different architecture), except rotary caches some exports include.
    public static func load(_ dir: String, positions: Int? = nil) throws -> DeepSeekV2ForCausalLM {
        let configPath = (dir as NSString).appendingPathComponent("config.json")
        let config = try DeepSeekV2Config.load(configPath)
        let files = try weightFiles(dir)
        var location: [String: SafeTensorsFile] = [:]
        for f in files {
            let st = try SafeTensorsFile(path: f)
            for n in st.names { location[n] = st }
        }
        let model = DeepSeekV2ForCausalLM(config, seed: 0, positions: positions)
        var seen = Set<String>()
        for (name, p) in model.namedParameters() {
            guard let file = location[name] else {
                throw CheckpointError(dir, "has no tensor \"\(name)\" that the config.json's model needs")
            }
            let t = try file.tensor(name)
            guard t.shape == p.shape else {
                throw CheckpointError(file.path, "tensor \"\(name)\" has shape \(t.shape); the config.json's model expects \(p.shape)")
            }
            p.copy(from: t)
            seen.insert(name)
        }
        let extra = location.keys.filter { !seen.contains($0) && !$0.hasSuffix("rotary_emb.inv_freq") }.sorted()
        if let first = extra.first {
            throw CheckpointError(location[first]!.path, "has \(extra.count) tensor(s) this model does not use, e.g. \"\(first)\": the weights do not match config.json")
        }
        return model
    }

    /// Writes config.json and the weights, in shards of at most `shardBytes` (with an index
    /// when more than one), every file written atomically.
    public static func save(_ model: DeepSeekV2ForCausalLM, to dir: String, shardBytes: Int = 4 << 30) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try atomicWrite(model.config.jsonData(), to: (dir as NSString).appendingPathComponent("config.json"))
        var shards: [[(String, Tensor)]] = [[]]
        var size = 0
        for (name, p) in model.namedParameters() {
            if size > 0 && size + p.count * 4 > shardBytes {
                shards.append([])
                size = 0
            }
            shards[shards.count - 1].append((name, p))
            size += p.count * 4
        }
        if shards.count == 1 {
            try SafeTensorsFile.write((dir as NSString).appendingPathComponent("model.safetensors"),
                                      shards[0].map { ($0.0, .float($0.1)) }, metadata: ["format": "pt"])
            return
        }
        var weightMap: [String: String] = [:]
        var total = 0
        for (i, shard) in shards.enumerated() {
            let file = String(format: "model-%05d-of-%05d.safetensors", i + 1, shards.count)
            try SafeTensorsFile.write((dir as NSString).appendingPathComponent(file), shard.map { ($0.0, .float($0.1)) },
                                      metadata: ["format": "pt"])
            for (n, t) in shard {
                weightMap[n] = file
                total += t.count * 4
            }
        }
        let index: [String: Any] = ["metadata": ["total_size": total], "weight_map": weightMap]
        try atomicWrite(try JSONSerialization.data(withJSONObject: index, options: [.prettyPrinted, .sortedKeys]),
                        to: (dir as NSString).appendingPathComponent("model.safetensors.index.json"))
    }

    static func weightFiles(_ dir: String) throws -> [String] {
        let indexPath = (dir as NSString).appendingPathComponent("model.safetensors.index.json")
        if let data = FileManager.default.contents(atPath: indexPath) {
            guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let map = json["weight_map"] as? [String: String] else {
                throw CheckpointError(indexPath, "is not a safetensors index (expected a \"weight_map\" object of name → file)")
            }
            return Set(map.values).sorted().map { (dir as NSString).appendingPathComponent($0) }
        }
        let single = (dir as NSString).appendingPathComponent("model.safetensors")
        if FileManager.default.fileExists(atPath: single) { return [single] }
        let all = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".safetensors") }.sorted()
        guard !all.isEmpty else { throw CheckpointError(dir, "has no *.safetensors weights (nor model.safetensors.index.json)") }
        return all.map { (dir as NSString).appendingPathComponent($0) }
    }
}
