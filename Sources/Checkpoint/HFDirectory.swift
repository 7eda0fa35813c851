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
        // The index promises where each tensor is; a promise the shard does not keep is corruption.
        if let map = try indexMap(dir) {
            for (name, file) in map.sorted(by: { $0.key < $1.key }) where location[name]?.path != (dir as NSString).appendingPathComponent(file) {
                throw CheckpointError((dir as NSString).appendingPathComponent(file),
                                      "does not hold tensor \"\(name)\", which model.safetensors.index.json places there")
            }
        }
        let model = DeepSeekV2ForCausalLM(config, seed: 0, positions: positions)
        var seen = Set<String>()
        for (name, p) in model.namedParameters() {
            guard let file = location[name] else {
                throw CheckpointError(dir, "no weights file holds tensor \"\(name)\", which the config.json's model needs (looked in \(files.map { ($0 as NSString).lastPathComponent }.joined(separator: ", ")))")
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

    public enum DType: String, Sendable, CaseIterable {
        case f32, bf16
        var bytes: Int { self == .f32 ? 4 : 2 }
    }

    /// The files besides the weights that a model directory's tokenizer and generation
    /// defaults live in; `convert` carries them through a checkpoint and back.
    public static let tokenizerFileNames = [
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json",
        "added_tokens.json", "generation_config.json",
    ]

    /// The tokenizer files present in `dir`, with their bytes.
    public static func tokenizerFiles(_ dir: String) -> [(String, Data)] {
        tokenizerFileNames.compactMap { n in
            FileManager.default.contents(atPath: (dir as NSString).appendingPathComponent(n)).map { (n, $0) }
        }
    }

    /// Writes config.json, the weights in `dtype` in shards of at most `shardBytes` (named
    /// model-0000K-of-0000N.safetensors with model.safetensors.index.json when more than one,
    /// as save_pretrained names them) and `tokenizerFiles`; every file written atomically, the
    /// index last.
    public static func save(_ model: DeepSeekV2ForCausalLM, to dir: String, shardBytes: Int = 5_000_000_000, dtype: DType = .f32,
                            tokenizerFiles: [(String, Data)] = []) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try atomicWrite(model.config.jsonData(), to: (dir as NSString).appendingPathComponent("config.json"))
        for (name, data) in tokenizerFiles { try atomicWrite(data, to: (dir as NSString).appendingPathComponent(name)) }
        var shards: [[(String, Tensor)]] = [[]]
        var size = 0
        for (name, p) in model.namedParameters() {
            let bytes = p.count * dtype.bytes
            if size > 0 && size + bytes > shardBytes {
                shards.append([])
                size = 0
            }
            shards[shards.count - 1].append((name, p))
            size += bytes
        }
        func item(_ t: Tensor) -> SafeTensorsFile.Item { dtype == .bf16 ? .bfloat16(t) : .float(t) }
        // A previous export's files must not survive next to this one.
        let old = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter {
            $0 == "model.safetensors" || $0 == "model.safetensors.index.json" || ($0.hasPrefix("model-") && $0.hasSuffix(".safetensors"))
        }
        for f in old { try? FileManager.default.removeItem(atPath: (dir as NSString).appendingPathComponent(f)) }
        if shards.count == 1 {
            try SafeTensorsFile.write((dir as NSString).appendingPathComponent("model.safetensors"),
                                      shards[0].map { ($0.0, item($0.1)) }, metadata: ["format": "pt"])
            return
        }
        var weightMap: [String: String] = [:]
        var total = 0
        for (i, shard) in shards.enumerated() {
            let file = String(format: "model-%05d-of-%05d.safetensors", i + 1, shards.count)
            try SafeTensorsFile.write((dir as NSString).appendingPathComponent(file), shard.map { ($0.0, item($0.1)) },
                                      metadata: ["format": "pt"])
            for (n, t) in shard {
                weightMap[n] = file
                total += t.count * dtype.bytes
            }
        }
        let index: [String: Any] = ["metadata": ["total_size": total], "weight_map": weightMap]
        try atomicWrite(try JSONSerialization.data(withJSONObject: index, options: [.prettyPrinted, .sortedKeys]),
                        to: (dir as NSString).appendingPathComponent("model.safetensors.index.json"))
    }

    /// `--max-shard-size` values as transformers writes them: "5GB", "500MB", "100KB" (powers
    /// of 1000), "2GiB"/"512MiB" (powers of 1024), or plain bytes.
    public static func parseSize(_ text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces).uppercased()
        let units: [(String, Double)] = [("GIB", 1_073_741_824), ("MIB", 1_048_576), ("KIB", 1024), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("B", 1)]
        for (u, m) in units where t.hasSuffix(u) {
            guard let v = Double(t.dropLast(u.count).trimmingCharacters(in: .whitespaces)), v > 0 else { return nil }
            return Int(v * m)
        }
        guard let v = Int(t), v > 0 else { return nil }
        return v
    }

    static func indexMap(_ dir: String) throws -> [String: String]? {
        let indexPath = (dir as NSString).appendingPathComponent("model.safetensors.index.json")
        guard let data = FileManager.default.contents(atPath: indexPath) else { return nil }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let map = json["weight_map"] as? [String: String] else {
            throw CheckpointError(indexPath, "is not a safetensors index (expected a \"weight_map\" object of name → file)")
        }
        return map
    }

    static func weightFiles(_ dir: String) throws -> [String] {
        if let map = try indexMap(dir) {
            let files = Set(map.values).sorted()
            for f in files where !FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent(f)) {
                let n = map.filter { $0.value == f }.count
                throw CheckpointError((dir as NSString).appendingPathComponent("model.safetensors.index.json"),
                                      "names shard \(f) (\(n) tensors), which \(dir) lacks")
            }
            return files.map { (dir as NSString).appendingPathComponent($0) }
        }
        let single = (dir as NSString).appendingPathComponent("model.safetensors")
        if FileManager.default.fileExists(atPath: single) { return [single] }
        let all = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".safetensors") }.sorted()
        guard !all.isEmpty else { throw CheckpointError(dir, "has no *.safetensors weights (nor model.safetensors.index.json)") }
        return all.map { (dir as NSString).appendingPathComponent($0) }
    }
}
