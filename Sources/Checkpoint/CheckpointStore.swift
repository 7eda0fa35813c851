import Foundation
@_exported import FileFormats
import Autograd
import DeepSeek

/// DeepTrain's checkpoint file (docs/design.md §4): one HDF5 file, topology-free.
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
/// Written atomically: to `<path>.tmp`, flushed, fsynced, renamed. A training checkpoint also
/// holds AdamW's moments (`/optimizer`) and the run's position (`/state`: stage index, global
/// step as the data cursor, RNG seed, V3's router biases): rank 0 writes the state in `begin`,
/// every rank its own element ranges in `write`, and rank 0 renames the file in `commit`.
package enum CheckpointStore {
    package static let format = "deeptrain-checkpoint"
    package static let version: Int64 = 1

    package struct State: Sendable, Equatable {
        package var stage: String
        package var step: Int
        package var tokens: Int
        package var recipe: String
        /// Index of the stage in the recipe, and the global step (data cursor) across stages.
        package var stageIndex: Int
        package var globalStep: Int
        package var seed: Int
        /// V3's router biases (`e_score_correction_bias`, Hugging Face name → values): buffers
        /// that aux-loss-free balancing moves, kept as `/state/router_bias/<name>`.
        package var routerBiases: [String: [Float]]
        package init(stage: String = "", step: Int = 0, tokens: Int = 0, recipe: String = "", stageIndex: Int = 0,
                    globalStep: Int = 0, seed: Int = 0, routerBiases: [String: [Float]] = [:]) {
            self.routerBiases = routerBiases
            self.stage = stage
            self.step = step
            self.tokens = tokens
            self.recipe = recipe
            self.stageIndex = stageIndex
            self.globalStep = globalStep
            self.seed = seed
        }
    }

    /// A whole model in one process (tests, tools). Training writes through `begin` / `write`
    /// / `commit`, every rank its own part with its optimizer state.
    package static func save(_ model: DeepSeekForCausalLM, state: State = State(), tokenizerFiles: [(String, Data)] = [],
                            to path: String) throws {
        var state = state
        state.routerBiases = model.routerBiasValues
        let named = Dictionary(model.namedParameters(), uniquingKeysWith: { a, _ in a })
        try save(config: model.config, parameters: model.namedParameters().map { ($0.0, $0.1.shape) }, state: state,
                 tokenizerFiles: tokenizerFiles, to: path) { named[$0]! }
    }

    /// `/state` and `/tokenizer`: everything but the tensors.
    static func writeState(_ f: HDF5File, config: DeepSeekConfig, state: State, tokenizerFiles: [(String, Data)]) throws {
        try f.createGroup("/state")
        try f.setAttribute("/state", "format", string: format)
        try f.setAttribute("/state", "format_version", int: version)
        try f.setAttribute("/state", "stage", string: state.stage)
        try f.setAttribute("/state", "step", int: Int64(state.step))
        try f.setAttribute("/state", "tokens", int: Int64(state.tokens))
        try f.setAttribute("/state", "config", string: String(decoding: config.jsonData(), as: UTF8.self))
        try f.setAttribute("/state", "recipe", string: state.recipe)
        try f.setAttribute("/state", "stage_index", int: Int64(state.stageIndex))
        try f.setAttribute("/state", "global_step", int: Int64(state.globalStep))
        // The RNG is counter-based: (seed, purpose, step, index) restores every stream.
        try f.setAttribute("/state", "rng_seed", int: Int64(state.seed))
        if !state.routerBiases.isEmpty {
            try f.createGroup("/state/router_bias")
            for (name, v) in state.routerBiases.sorted(by: { $0.key < $1.key }) {
                try f.write("/state/router_bias/\(name)", Tensor(v, shape: [v.count]))
            }
        }
        if !tokenizerFiles.isEmpty {
            try f.createGroup("/tokenizer")
            for (name, data) in tokenizerFiles { try f.write("/tokenizer/\(name)", bytes: Array(data)) }
        }
    }

    // MARK: written by every rank, without a gather

    /// Elements `range` of parameter `name` that one rank holds: its values, and its AdamW
    /// moments when the checkpoint has them.
    package struct Slice {
        package let name: String
        package let range: Range<Int>
        package let values: UnsafeMutablePointer<Float>
        package let m: UnsafeMutablePointer<Float>?, v: UnsafeMutablePointer<Float>?
        package init(name: String, range: Range<Int>, values: UnsafeMutablePointer<Float>,
                    m: UnsafeMutablePointer<Float>?, v: UnsafeMutablePointer<Float>?) {
            self.name = name
            self.range = range
            self.values = values
            self.m = m
            self.v = v
        }
    }

    /// First part of a checkpoint written by many ranks: rank 0 creates `<path>.tmp` with the
    /// state, the tokenizer and every dataset at its full shape (same names and layout as
    /// `save`), and no elements yet. Returns the temporary path.
    package static func begin(_ path: String, config: DeepSeekConfig, parameters: [(name: String, shape: [Int])],
                             state: State, optimizerStep: Int?, tokenizerFiles: [(String, Data)]) throws -> String {
        let tmp = path + ".tmp"
        try? FileManager.default.removeItem(atPath: tmp)
        let f = try HDF5File.create(tmp)
        do {
            try f.createGroup("/model")
            for p in parameters { try f.createFloats("/model/\(p.name)", shape: p.shape) }
            try writeState(f, config: config, state: state, tokenizerFiles: tokenizerFiles)
            if let step = optimizerStep {
                try f.createGroup("/optimizer")
                try f.createGroup("/optimizer/exp_avg")
                try f.createGroup("/optimizer/exp_avg_sq")
                try f.setAttribute("/optimizer", "step", int: Int64(step))
                for p in parameters {
                    try f.createFloats("/optimizer/exp_avg/\(p.name)", shape: p.shape)
                    try f.createFloats("/optimizer/exp_avg_sq/\(p.name)", shape: p.shape)
                }
            }
            try f.close()
        } catch {
            try? f.close()
            try? FileManager.default.removeItem(atPath: tmp)
            throw error
        }
        return tmp
    }

    /// One rank's turn: opens the temporary file, writes its slices (values, and moments where
    /// given) straight from its own memory, closes it. Serial HDF5: one rank at a time.
    package static func write(_ slices: [Slice], into tmp: String) throws {
        let f = try HDF5File.openForWriting(tmp)
        do {
            for s in slices {
                try f.writeFloats("/model/\(s.name)", range: s.range, from: s.values)
                if let m = s.m { try f.writeFloats("/optimizer/exp_avg/\(s.name)", range: s.range, from: m) }
                if let v = s.v { try f.writeFloats("/optimizer/exp_avg_sq/\(s.name)", range: s.range, from: v) }
            }
            // Fault injection for the crash-safety test: a pause mid-write to kill the process in.
            if let ms = ProcessInfo.processInfo.environment["DEEPTRAIN_FAULT_CHECKPOINT_PAUSE_MS"].flatMap({ Int($0) }) {
                try f.flush()
                usleep(UInt32(ms) * 1000)
            }
        } catch {
            try? f.close()
            throw error
        }
        try f.close()
    }

    /// Last part, on rank 0 after every rank's turn: fsync, then rename into place.
    package static func commit(_ tmp: String, to path: String) throws {
        do {
            try fsyncFile(tmp)
            guard rename(tmp, path) == 0 else { throw CheckpointError(path, "cannot rename \(tmp) into place (errno \(errno))") }
            HDF5Screen.trust(path)
        } catch {
            try? FileManager.default.removeItem(atPath: tmp)
            throw error
        }
    }

    /// Checks that `path` has AdamW moments of the given parameters at their shapes (metadata
    /// only) and returns its optimizer step, or nil when it has none (a converted model).
    package static func optimizerStep(_ path: String, parameters: [(name: String, shape: [Int])]) throws -> Int? {
        let f = try HDF5File.open(path)
        defer { try? f.close() }
        guard f.exists("/optimizer") else { return nil }
        for p in parameters {
            for group in ["exp_avg", "exp_avg_sq"] {
                let d = "/optimizer/\(group)/\(p.name)"
                guard f.exists(d) else { throw CheckpointError(path, "has no \(d)") }
                let s = try f.shape(d)
                guard s == p.shape else { throw CheckpointError(path, "\(d) has shape \(s); expected \(p.shape)") }
            }
        }
        return Int(try f.intAttribute("/optimizer", "step"))
    }

    /// Reads only these slices' moments (and, with `values`, their values): what one rank of a
    /// resumed job needs of the optimizer state, whatever layout wrote the file.
    package static func read(_ slices: [Slice], from path: String, values: Bool) throws {
        let f = try HDF5File.open(path)
        defer { try? f.close() }
        for s in slices {
            if values { try f.readFloats("/model/\(s.name)", range: s.range, into: s.values) }
            if let m = s.m { try f.readFloats("/optimizer/exp_avg/\(s.name)", range: s.range, into: m) }
            if let v = s.v { try f.readFloats("/optimizer/exp_avg_sq/\(s.name)", range: s.range, into: v) }
        }
    }

    /// The model config stored in a checkpoint, without reading its tensors.
    package static func readConfig(_ path: String) throws -> DeepSeekConfig {
        let f = try HDF5File.open(path)
        defer { try? f.close() }
        guard (try? f.stringAttribute("/state", "format")) == format else {
            throw CheckpointError(path, "is an HDF5 file but not a DeepTrain checkpoint (no /state@format = \"\(format)\")")
        }
        do {
            let config = try JSONDecoder().decode(DeepSeekConfig.self, from: Data(try f.stringAttribute("/state", "config").utf8))
            try config.validate(source: "\(path)/state@config")
            return config
        } catch let e as CheckpointError {
            throw e
        } catch {
            throw CheckpointError(path, "its /state@config is not a valid model config: \(error)")
        }
    }

    /// Reads the config, builds the model and fills every parameter from `/model`.
    /// With `holds`, only the parameters it accepts are read (a rank's part); the others stay
    /// untouched zeros.
    /// `mtp: false` leaves the MTP depths out (inference never runs them).
    package static func load(_ path: String, positions: Int? = nil, holds: ((String) -> Bool)? = nil, mtp: Bool = true) throws -> (DeepSeekForCausalLM, State) {
        let r = try Reader(path)
        defer { r.close() }
        var config = r.config
        if !mtp { config.numNextnPredictLayers = 0 }
        // The file's shapes are checked before the model they describe is allocated.
        try r.check(DeepSeekForCausalLM.parameterShapes(config))
        let model = DeepSeekForCausalLM(config, seed: 0, positions: positions, holds: { _ in false })
        let named = model.namedParameters()
        for (name, p) in named where holds?(name) ?? true { p.copy(from: try r.tensor(name)) }
        model.setRouterBiases(r.state.routerBiases)
        return (model, r.state)
    }

    /// An opened checkpoint whose format, version and config were checked; tensors are read one
    /// at a time (a conversion streams them).
    package final class Reader {
        package let path: String
        package let config: DeepSeekConfig
        package let state: State
        let f: HDF5File

        package init(_ path: String) throws {
            self.path = path
            let f = try HDF5File.open(path)
            do {
                let fmt = (try? f.stringAttribute("/state", "format")) ?? ""
                guard fmt == format else {
                    throw CheckpointError(path, "is an HDF5 file but not a DeepTrain checkpoint (no /state@format = \"\(format)\")")
                }
                let v = try f.intAttribute("/state", "format_version")
                guard v == version else { throw CheckpointError(path, "has format version \(v); this build reads version \(version)") }
                let configJSON = try f.stringAttribute("/state", "config")
                do {
                    config = try JSONDecoder().decode(DeepSeekConfig.self, from: Data(configJSON.utf8))
                    try config.validate(source: "\(path)/state@config")
                } catch {
                    throw CheckpointError(path, "its /state@config is not a valid model config: \(error)")
                }
                var st = State(stage: try f.stringAttribute("/state", "stage"), step: Int(try f.intAttribute("/state", "step")),
                              tokens: Int(try f.intAttribute("/state", "tokens")), recipe: try f.stringAttribute("/state", "recipe"),
                              stageIndex: Int((try? f.intAttribute("/state", "stage_index")) ?? 0),
                              globalStep: Int((try? f.intAttribute("/state", "global_step")) ?? 0),
                              seed: Int((try? f.intAttribute("/state", "rng_seed")) ?? 0))
                if f.exists("/state/router_bias") {
                    for name in try f.list("/state/router_bias") {
                        st.routerBiases[name] = try f.readTensor("/state/router_bias/\(name)").values
                    }
                }
                let wanted = DeepSeekForCausalLM.bufferShapes(config)
                for (name, shape) in wanted {
                    if let v = st.routerBiases[name], v.count != shape[0] {
                        throw CheckpointError(path, "/state/router_bias/\(name) has \(v.count) values; its config expects \(shape[0])")
                    }
                }
                state = st
            } catch {
                try? f.close()
                throw error
            }
            self.f = f
        }

        /// Every parameter the config needs is present at its shape.
        package func check(_ parameters: [(name: String, shape: [Int])]) throws {
            let stored = Set(try f.list("/model"))
            for (name, shape) in parameters {
                guard stored.contains(name) else { throw CheckpointError(path, "has no /model/\(name), which its config needs") }
                let s = try f.shape("/model/\(name)")
                guard s == shape else { throw CheckpointError(path, "/model/\(name) has shape \(s); its config expects \(shape)") }
            }
        }

        package func tensor(_ name: String) throws -> Tensor { try f.readTensor("/model/\(name)") }

        package func close() { try? f.close() }
    }

    /// A checkpoint without optimizer state (a converted model), its tensors taken one at a time from
    /// `tensor(name)`: memory for one tensor, not the model. Atomic like `save`.
    package static func save(config: DeepSeekConfig, parameters: [(name: String, shape: [Int])], state: State = State(),
                            tokenizerFiles: [(String, Data)], to path: String, tensor: (String) throws -> Tensor) throws {
        let tmp = path + ".tmp"
        try? FileManager.default.removeItem(atPath: tmp)
        do {
            let f = try HDF5File.create(tmp)
            do {
                try f.createGroup("/model")
                for p in parameters {
                    let t = try tensor(p.name)
                    guard t.shape == p.shape else { throw CheckpointError(path, "tensor \(p.name) came with shape \(t.shape); expected \(p.shape)") }
                    try f.write("/model/\(p.name)", t)
                }
                try writeState(f, config: config, state: state, tokenizerFiles: tokenizerFiles)
                try f.flush()
            } catch {
                try? f.close()
                throw error
            }
            try f.close()
            try commit(tmp, to: path)
        } catch {
            try? FileManager.default.removeItem(atPath: tmp)
            throw error
        }
    }

    /// What `verify` found: every structure checked and every value read.
    package struct Verified {
        package var tensors = 0
        package var values = 0
        package var optimizerState = false
        package var tokenizerFiles: [String] = []
    }

    /// Reads everything in a checkpoint through the validating reader: the state, the config,
    /// every parameter and (when present) its AdamW moments, the router biases and the
    /// tokenizer files. The child process of `HDF5Screen` runs this.
    package static func verify(_ path: String) throws -> Verified {
        let r = try Reader(path)
        defer { r.close() }
        let parameters = DeepSeekForCausalLM.parameterShapes(r.config)
        try r.check(parameters)
        var out = Verified()
        out.optimizerState = try optimizerStep(path, parameters: parameters) != nil
        let f = try HDF5File.open(path)
        defer { try? f.close() }
        let groups = ["/model"] + (out.optimizerState ? ["/optimizer/exp_avg", "/optimizer/exp_avg_sq"] : [])
        for group in groups {
            for (name, _) in parameters {
                out.values += try f.readTensor("\(group)/\(name)").count
                out.tensors += 1
            }
        }
        out.tokenizerFiles = try tokenizerFiles(path).map(\.0)
        return out
    }

    /// The tokenizer files stored with the model (empty for a checkpoint without them).
    package static func tokenizerFiles(_ path: String) throws -> [(String, Data)] {
        let f = try HDF5File.open(path)
        defer { try? f.close() }
        guard f.exists("/tokenizer") else { return [] }
        return try f.list("/tokenizer").sorted().map { ($0, Data(try f.readBytes("/tokenizer/\($0)"))) }
    }
}

func fsyncFile(_ path: String) throws {
    let fd = Foundation.open(path, O_RDONLY)
    guard fd >= 0 else { throw CheckpointError(path, "cannot reopen to fsync") }
    defer { Foundation.close(fd) }
    guard fsync(fd) == 0 else { throw CheckpointError(path, "fsync failed (errno \(errno))") }
}
