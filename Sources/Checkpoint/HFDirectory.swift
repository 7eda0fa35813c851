import Foundation
import Autograd
import DeepSeek
import FileSafety

/// A Hugging Face model directory: `config.json` plus weights in `model.safetensors` or in
/// shards listed by `model.safetensors.index.json`, under the DeepSeek-V2 tensor names.
package enum HFDirectory {
    /// Reads the config and builds the model with the directory's weights. Every parameter
    /// must be present with its shape; a tensor the model does not have is an error too (it
    /// would mean a different architecture), except rotary caches some exports include.
    /// With `holds`, only the parameters it accepts are read (a rank's part).
    /// `mtp: false` leaves the MTP depths out (inference never runs them): their tensors are
    /// neither read nor held.
    package static func load(_ dir: String, positions: Int? = nil, holds: ((String) -> Bool)? = nil, mtp: Bool = true) throws -> DeepSeekForCausalLM {
        let w = try Weights(dir, mtp: mtp)
        // The files' shapes are checked before the model they describe is allocated.
        try w.check(DeepSeekForCausalLM.parameterShapes(w.config))
        let model = DeepSeekForCausalLM(w.config, seed: 0, positions: positions, holds: { _ in false })
        let named = model.namedParameters()
        for (name, p) in named where holds?(name) ?? true { p.copy(from: try w.tensor(name)) }
        model.setRouterBiases(try w.routerBiases())
        return model
    }

    /// A directory's config and weight files, opened and cross-checked (index against shards),
    /// tensors read one at a time.
    package struct Weights {
        package let dir: String
        package let config: DeepSeekConfig
        /// The config promised MTP depths whose tensors the files do not have (transformers
        /// saves V3 without its MTP module): the model is read with MTP off.
        package let droppedMTP: Bool
        /// Opened with `mtp: false`: the files' MTP tensors are left unread.
        let skipsMTP: Bool
        let files: [String]
        let location: [String: SafeTensorsFile]

        package init(_ dir: String, mtp: Bool = true) throws {
            self.dir = dir
            var config = try DeepSeekConfig.load((dir as NSString).appendingPathComponent("config.json"))
            files = try weightFiles(dir)
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
            self.location = location
            droppedMTP = config.numNextnPredictLayers > 0 && location["model.layers.\(config.numHiddenLayers).eh_proj.weight"] == nil
            skipsMTP = !mtp && config.numNextnPredictLayers > 0
            if droppedMTP || skipsMTP { config.numNextnPredictLayers = 0 }
            self.config = config
        }

        /// The V3 router biases the files hold (name → values); a missing one reads as zeros.
        package func routerBiases() throws -> [String: [Float]] {
            var out: [String: [Float]] = [:]
            for (name, _) in DeepSeekForCausalLM.bufferShapes(config) where location[name] != nil {
                out[name] = try tensor(name).values
            }
            return out
        }

        /// Every parameter present at its shape, and no tensor the model lacks (rotary caches aside).
        package func check(_ parameters: [(name: String, shape: [Int])]) throws {
            for (name, shape) in parameters {
                guard let file = location[name] else {
                    throw CheckpointError(dir, "no weights file holds tensor \"\(name)\", which the config.json's model needs (looked in \(files.map { ($0 as NSString).lastPathComponent }.joined(separator: ", ")))")
                }
                let s = try file.entry(name).shape
                guard s == shape else {
                    throw CheckpointError(file.path, "tensor \"\(name)\" has shape \(s); the config.json's model expects \(shape)")
                }
            }
            // Buffers and the release's copies of shared tensors beside the MTP depths are allowed.
            let buffers = DeepSeekForCausalLM.bufferShapes(config)
            for (name, shape) in buffers {
                if let file = location[name], try file.entry(name).shape != shape {
                    throw CheckpointError(file.path, "tensor \"\(name)\" has shape \(try file.entry(name).shape); the config.json's model expects \(shape)")
                }
            }
            let copies = DeepSeekForCausalLM.sharedCopies(config)
            let shapes = Dictionary(parameters.map { ($0.name, $0.shape) }, uniquingKeysWith: { a, _ in a })
            for (copy, of) in copies {
                if let file = location[copy], let want = shapes[of], try file.entry(copy).shape != want {
                    throw CheckpointError(file.path, "tensor \"\(copy)\" (a copy of \(of)) has shape \(try file.entry(copy).shape); expected \(want)")
                }
            }
            let known = Set(parameters.map(\.name) + buffers.map(\.name) + copies.map(\.copy))
            func isMTP(_ name: String) -> Bool {
                guard skipsMTP, let l = DeepSeekForCausalLM.layerIndex(of: name) else { return false }
                return l >= config.numHiddenLayers
            }
            let extra = location.keys.filter { !known.contains($0) && !$0.hasSuffix("rotary_emb.inv_freq") && !isMTP($0) }.sorted()
            if let first = extra.first {
                throw CheckpointError(location[first]!.path, "has \(extra.count) tensor(s) this model does not use, e.g. \"\(first)\": the weights do not match config.json")
            }
        }

        /// One tensor as float32 (its mapped pages released afterwards).
        package func tensor(_ name: String) throws -> Tensor {
            guard let file = location[name] else { throw CheckpointError(dir, "no weights file holds tensor \"\(name)\"") }
            return try file.tensor(name)
        }
    }

    package enum DType: String, Sendable, CaseIterable {
        case f32, bf16
        var bytes: Int { self == .f32 ? 4 : 2 }
    }

    /// The files besides the weights that a model directory's tokenizer and generation
    /// defaults live in; `convert` carries them through a checkpoint and back.
    package static let tokenizerFileNames = [
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json",
        "added_tokens.json", "generation_config.json",
    ]

    /// The tokenizer files present in `dir`, with their bytes.
    package static func tokenizerFiles(_ dir: String) throws -> [(String, Data)] {
        try tokenizerFileNames.compactMap { n in
            let path = (dir as NSString).appendingPathComponent(n)
            guard FileManager.default.fileExists(atPath: path) else { return nil }
            do { return (n, try readBoundedFile(path, limit: tokenizerFileBytes, what: "a tokenizer file")) } catch let e as BoundedFileError {
                throw CheckpointError(path, e.message)
            }
        }
    }

    /// A tokenizer file carried along (a published tokenizer.json is at most about 20 MB).
    package static let tokenizerFileBytes = 512 << 20

    /// Writes config.json, the weights in `dtype` in shards of at most `shardBytes` (named
    /// model-0000K-of-0000N.safetensors with model.safetensors.index.json when more than one,
    /// as save_pretrained names them) and `tokenizerFiles`; every file written atomically, the
    /// index last.
    package static func save(_ model: DeepSeekForCausalLM, to dir: String, shardBytes: Int = 5_000_000_000, dtype: DType = .f32,
                            tokenizerFiles: [(String, Data)] = []) throws {
        let named = Dictionary(model.namedParameters(), uniquingKeysWith: { a, _ in a })
        try save(config: model.config, parameters: model.namedParameters().map { ($0.0, $0.1.shape) }, to: dir, shardBytes: shardBytes,
                 dtype: dtype, tokenizerFiles: tokenizerFiles, routerBiases: model.routerBiasValues) { named[$0]! }
    }

    /// `save` from a source of tensors, one at a time (`tensor(name)`, in canonical order within
    /// each shard): a conversion holds one tensor, not the model. V3's router biases go in as
    /// float32 (transformers keeps them so), zeros where `routerBiases` lacks one, and each MTP
    /// depth gets the release's copies of the embedding and head.
    package static func save(config: DeepSeekConfig, parameters: [(name: String, shape: [Int])], to dir: String,
                            shardBytes: Int = 5_000_000_000, dtype: DType = .f32, tokenizerFiles: [(String, Data)] = [],
                            routerBiases: [String: [Float]] = [:], tensor source: (String) throws -> Tensor) throws {
        let copies = Dictionary(DeepSeekForCausalLM.sharedCopies(config).map { ($0.copy, $0.of) }, uniquingKeysWith: { a, _ in a })
        let shapes = Dictionary(parameters.map { ($0.name, $0.shape) }, uniquingKeysWith: { a, _ in a })
        let buffers = DeepSeekForCausalLM.bufferShapes(config)
        let bufferNames = Set(buffers.map(\.name))
        let parameters = parameters + DeepSeekForCausalLM.sharedCopies(config).compactMap { c in shapes[c.of].map { (c.copy, $0) } } + buffers
        func tensor(_ name: String) throws -> Tensor {
            if let of = copies[name] { return try source(of) }
            if bufferNames.contains(name) {
                let n = config.nRoutedExperts
                return Tensor(routerBiases[name] ?? [Float](repeating: 0, count: n), shape: [n])
            }
            return try source(name)
        }
        // The directory appears whole or not at all: written under a temporary name, renamed at the end.
        try AtomicDirectory.write(dir, ownsName: writesName) { staging in
            try saveFiles(config: config, parameters: parameters, to: staging, shardBytes: shardBytes, dtype: dtype,
                          tokenizerFiles: tokenizerFiles, bufferNames: bufferNames, tensor: tensor)
        }
    }

    /// Names a conversion writes: an existing destination holding only these is replaced.
    static func writesName(_ name: String) -> Bool {
        name == "config.json" || tokenizerFileNames.contains(name) || name == "model.safetensors.index.json"
            || (name.hasPrefix("model") && name.hasSuffix(".safetensors"))
    }

    static func saveFiles(config: DeepSeekConfig, parameters: [(name: String, shape: [Int])], to dir: String, shardBytes: Int,
                          dtype: DType, tokenizerFiles: [(String, Data)], bufferNames: Set<String>,
                          tensor: (String) throws -> Tensor) throws {
        try atomicWrite(config.jsonData(), to: (dir as NSString).appendingPathComponent("config.json"))
        for (name, data) in tokenizerFiles where tokenizerFileNames.contains(name) {
            try atomicWrite(data, to: (dir as NSString).appendingPathComponent(name))
        }
        var shards: [[(name: String, shape: [Int])]] = [[]]
        var size = 0
        for p in parameters {
            let bytes = p.shape.reduce(1, *) * dtype.bytes
            if size > 0 && size + bytes > shardBytes {
                shards.append([])
                size = 0
            }
            shards[shards.count - 1].append(p)
            size += bytes
        }
        let code = dtype == .bf16 ? "BF16" : "F32"
        func write(_ file: String, _ shard: [(name: String, shape: [Int])]) throws {
            try SafeTensorsFile.write((dir as NSString).appendingPathComponent(file),
                                      shard.map { SafeTensorsFile.Planned(name: $0.name, dtype: bufferNames.contains($0.name) ? "F32" : code, shape: $0.shape) },
                                      metadata: ["format": "pt"]) { name in
                let t = try tensor(name)
                return dtype == .bf16 && !bufferNames.contains(name) ? .bfloat16(t) : .float(t)
            }
        }
        if shards.count == 1 {
            try write("model.safetensors", shards[0])
            return
        }
        var weightMap: [String: String] = [:]
        var total = 0
        for (i, shard) in shards.enumerated() {
            let file = String(format: "model-%05d-of-%05d.safetensors", i + 1, shards.count)
            try write(file, shard)
            for p in shard {
                weightMap[p.name] = file
                total += p.shape.reduce(1, *) * (bufferNames.contains(p.name) ? 4 : dtype.bytes)
            }
        }
        let index: [String: Any] = ["metadata": ["total_size": total], "weight_map": weightMap]
        try atomicWrite(try JSONSerialization.data(withJSONObject: index, options: [.prettyPrinted, .sortedKeys]),
                        to: (dir as NSString).appendingPathComponent("model.safetensors.index.json"))
    }

    /// `--max-shard-size` values as transformers writes them: "5GB", "500MB", "100KB" (powers
    /// of 1000), "2GiB"/"512MiB" (powers of 1024), or plain bytes.
    package static func parseSize(_ text: String) -> Int? {
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
        guard FileManager.default.fileExists(atPath: indexPath) else { return nil }
        let data: Data
        do { data = try readBoundedFile(indexPath, limit: indexBytes, what: "a safetensors index") } catch let e as BoundedFileError {
            throw CheckpointError(indexPath, e.message)
        }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let map = json["weight_map"] as? [String: String] else {
            throw CheckpointError(indexPath, "is not a safetensors index (expected a \"weight_map\" object of name → file)")
        }
        // A shard is a file beside the index: a name with a path in it could point anywhere.
        if let (name, file) = map.first(where: { !isPlainShardName($0.value) }) {
            throw CheckpointError(indexPath, "places tensor \(quoted(name)) in \(quoted(file)); expected a .safetensors file name in the same directory")
        }
        return map
    }

    /// A safetensors index of a published model is about 100 KB (DeepSeek-V3: 9 MB at most).
    static let indexBytes = 64 << 20

    static func isPlainShardName(_ file: String) -> Bool {
        !file.contains("/") && !file.contains("\\") && !file.hasPrefix(".") && file.hasSuffix(".safetensors")
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
