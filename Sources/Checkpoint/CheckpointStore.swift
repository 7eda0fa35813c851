import Foundation
import Autograd
import DeepSeek

/// DeepTrain's checkpoint file (DESIGN §4): one HDF5 file, topology-free.
///
/// - `/model/<hf name>`: float32 datasets, the logical full tensors under their Hugging Face
///   names and layouts;
/// - `/state`: attributes `format` ("deeptrain-checkpoint"), `format_version`, `stage`, `step`,
///   `tokens`, `config` (the model's config.json) and `recipe` (the resolved recipe, when a
///   recipe wrote it);
/// - `/tokenizer/<file>`: the tokenizer files that came with the model (tokenizer.json,
///   tokenizer_config.json, chat_template.jinja, ...) as uint8 datasets, so a checkpoint
///   converted back to a Hugging Face directory carries them.
///
/// Written atomically: to `<path>.tmp`, flushed, fsynced, renamed. The optimizer, RNG and data
/// sections come with the trainer (pretraining issue).
public enum CheckpointStore {
    public static let format = "deeptrain-checkpoint"
    public static let version: Int64 = 1

    public struct State: Sendable, Equatable {
        public var stage: String
        public var step: Int
        public var tokens: Int
        public var recipe: String
        /// Index of the stage in the recipe, and the global step (data cursor) across stages.
        public var stageIndex: Int
        public var globalStep: Int
        public var seed: Int
        public init(stage: String = "", step: Int = 0, tokens: Int = 0, recipe: String = "", stageIndex: Int = 0,
                    globalStep: Int = 0, seed: Int = 0) {
            self.stage = stage
            self.step = step
            self.tokens = tokens
            self.recipe = recipe
            self.stageIndex = stageIndex
            self.globalStep = globalStep
            self.seed = seed
        }
    }

    /// AdamW moments under the parameters' names, and its step count.
    public struct OptimizerState {
        public var step: Int
        public var names: [String]
        public var m: [Tensor]
        public var v: [Tensor]
        public init(step: Int, names: [String], m: [Tensor], v: [Tensor]) {
            self.step = step
            self.names = names
            self.m = m
            self.v = v
        }
    }

    public static func save(_ model: DeepSeekV2ForCausalLM, state: State = State(), optimizer: OptimizerState? = nil,
                            tokenizerFiles: [(String, Data)] = [], to path: String) throws {
        let tmp = path + ".tmp"
        try? FileManager.default.removeItem(atPath: tmp)
        do {
            let f = try HDF5File.create(tmp)
            do {
                try f.createGroup("/model")
                for (name, p) in model.namedParameters() { try f.write("/model/\(name)", p) }
                // Fault injection for the crash-safety test: a pause mid-write to kill the process in.
                if let ms = ProcessInfo.processInfo.environment["DEEPTRAIN_FAULT_CHECKPOINT_PAUSE_MS"].flatMap({ Int($0) }) {
                    try f.flush()
                    usleep(UInt32(ms) * 1000)
                }
                try f.createGroup("/state")
                try f.setAttribute("/state", "format", string: format)
                try f.setAttribute("/state", "format_version", int: version)
                try f.setAttribute("/state", "stage", string: state.stage)
                try f.setAttribute("/state", "step", int: Int64(state.step))
                try f.setAttribute("/state", "tokens", int: Int64(state.tokens))
                try f.setAttribute("/state", "config", string: String(decoding: model.config.jsonData(), as: UTF8.self))
                try f.setAttribute("/state", "recipe", string: state.recipe)
                try f.setAttribute("/state", "stage_index", int: Int64(state.stageIndex))
                try f.setAttribute("/state", "global_step", int: Int64(state.globalStep))
                // The RNG is counter-based: (seed, purpose, step, index) restores every stream.
                try f.setAttribute("/state", "rng_seed", int: Int64(state.seed))
                if !tokenizerFiles.isEmpty {
                    try f.createGroup("/tokenizer")
                    for (name, data) in tokenizerFiles { try f.write("/tokenizer/\(name)", bytes: Array(data)) }
                }
                if let o = optimizer {
                    try f.createGroup("/optimizer")
                    try f.createGroup("/optimizer/exp_avg")
                    try f.createGroup("/optimizer/exp_avg_sq")
                    try f.setAttribute("/optimizer", "step", int: Int64(o.step))
                    for (i, n) in o.names.enumerated() {
                        try f.write("/optimizer/exp_avg/\(n)", o.m[i])
                        try f.write("/optimizer/exp_avg_sq/\(n)", o.v[i])
                    }
                }
                try f.flush()
            } catch {
                try? f.close()
                throw error
            }
            try f.close()
            try fsyncFile(tmp)
            guard rename(tmp, path) == 0 else { throw CheckpointError(path, "cannot rename \(tmp) into place (errno \(errno))") }
        } catch {
            try? FileManager.default.removeItem(atPath: tmp)
            throw error
        }
    }

    /// The model config stored in a checkpoint, without reading its tensors.
    public static func readConfig(_ path: String) throws -> DeepSeekV2Config {
        let f = try HDF5File.open(path)
        defer { try? f.close() }
        guard (try? f.stringAttribute("/state", "format")) == format else {
            throw CheckpointError(path, "is an HDF5 file but not a DeepTrain checkpoint (no /state@format = \"\(format)\")")
        }
        do {
            return try JSONDecoder().decode(DeepSeekV2Config.self, from: Data(try f.stringAttribute("/state", "config").utf8))
        } catch let e as CheckpointError {
            throw e
        } catch {
            throw CheckpointError(path, "its /state@config is not a valid model config: \(error)")
        }
    }

    /// Reads the config, builds the model and fills every parameter from `/model`.
    public static func load(_ path: String, positions: Int? = nil) throws -> (DeepSeekV2ForCausalLM, State) {
        let f = try HDF5File.open(path)
        defer { try? f.close() }
        let fmt = (try? f.stringAttribute("/state", "format")) ?? ""
        guard fmt == format else {
            throw CheckpointError(path, "is an HDF5 file but not a DeepTrain checkpoint (no /state@format = \"\(format)\")")
        }
        let v = try f.intAttribute("/state", "format_version")
        guard v == version else { throw CheckpointError(path, "has format version \(v); this build reads version \(version)") }
        let configJSON = try f.stringAttribute("/state", "config")
        let config: DeepSeekV2Config
        do {
            config = try JSONDecoder().decode(DeepSeekV2Config.self, from: Data(configJSON.utf8))
            try config.validate(source: "\(path)/state@config")
        } catch {
            throw CheckpointError(path, "its /state@config is not a valid model config: \(error)")
        }
        let model = DeepSeekV2ForCausalLM(config, seed: 0, positions: positions)
        let stored = Set(try f.list("/model"))
        for (name, p) in model.namedParameters() {
            guard stored.contains(name) else { throw CheckpointError(path, "has no /model/\(name), which its config needs") }
            let s = try f.shape("/model/\(name)")
            guard s == p.shape else { throw CheckpointError(path, "/model/\(name) has shape \(s); its config expects \(p.shape)") }
            p.copy(from: try f.readTensor("/model/\(name)"))
        }
        let state = State(stage: try f.stringAttribute("/state", "stage"), step: Int(try f.intAttribute("/state", "step")),
                          tokens: Int(try f.intAttribute("/state", "tokens")), recipe: try f.stringAttribute("/state", "recipe"),
                          stageIndex: Int((try? f.intAttribute("/state", "stage_index")) ?? 0),
                          globalStep: Int((try? f.intAttribute("/state", "global_step")) ?? 0),
                          seed: Int((try? f.intAttribute("/state", "rng_seed")) ?? 0))
        return (model, state)
    }

    /// The tokenizer files stored with the model (empty for a checkpoint without them).
    public static func tokenizerFiles(_ path: String) throws -> [(String, Data)] {
        let f = try HDF5File.open(path)
        defer { try? f.close() }
        guard f.exists("/tokenizer") else { return [] }
        return try f.list("/tokenizer").sorted().map { ($0, Data(try f.readBytes("/tokenizer/\($0)"))) }
    }

    /// The AdamW state for the parameters `names` (shapes from `like`), or nil when the file
    /// has none (a converted model).
    public static func loadOptimizer(_ path: String, names: [String], like: [Tensor]) throws -> OptimizerState? {
        let f = try HDF5File.open(path)
        defer { try? f.close() }
        guard f.exists("/optimizer") else { return nil }
        var m: [Tensor] = [], v: [Tensor] = []
        for (n, p) in zip(names, like) {
            for (group, into) in [("exp_avg", 0), ("exp_avg_sq", 1)] {
                let dpath = "/optimizer/\(group)/\(n)"
                guard f.exists(dpath) else { throw CheckpointError(path, "has no \(dpath)") }
                let s = try f.shape(dpath)
                guard s == p.shape else { throw CheckpointError(path, "\(dpath) has shape \(s); expected \(p.shape)") }
                let t = try f.readTensor(dpath)
                if into == 0 { m.append(t) } else { v.append(t) }
            }
        }
        return OptimizerState(step: Int(try f.intAttribute("/optimizer", "step")), names: names, m: m, v: v)
    }
}

func fsyncFile(_ path: String) throws {
    let fd = Foundation.open(path, O_RDONLY)
    guard fd >= 0 else { throw CheckpointError(path, "cannot reopen to fsync") }
    defer { Foundation.close(fd) }
    guard fsync(fd) == 0 else { throw CheckpointError(path, "fsync failed (errno \(errno))") }
}
