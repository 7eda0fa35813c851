import ArgumentParser
import Foundation
import DeepSeek
import Checkpoint
import Training

/// Loads a model from a Hugging Face directory (config.json + safetensors) or builds a preset
/// with random weights; reports bad input as one line and exit code 1.
func loadModel(_ spec: String, positions: Int, seed: UInt64 = 0) throws -> DeepSeekV2ForCausalLM {
    do {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: spec, isDirectory: &isDir) {
            if isDir.boolValue { return try HFDirectory.load(spec, positions: positions) }
            return try CheckpointStore.load(spec, positions: positions).0
        }
        if DeepSeekV2Config.presetNames.contains(spec) {
            return DeepSeekV2ForCausalLM(try DeepSeekV2Config.preset(spec), seed: seed, positions: positions)
        }
        throw CheckpointError(spec, "is neither a DeepTrain checkpoint (.h5), a Hugging Face model directory nor a preset (\(DeepSeekV2Config.presetNames.joined(separator: ", ")))")
    } catch let e as CheckpointError {
        fail(e.description)
    } catch let e as ConfigError {
        fail(e.description)
    }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    Foundation.exit(1)
}

struct ForwardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forward",
        abstract: "One batch forward (and backward) dumping logits, hidden states, routing and gradients (DESIGN §5).")

    @Option(help: "A DeepTrain checkpoint (.h5) or a Hugging Face model directory.") var model: String
    @Option(help: "safetensors with input_ids (int64 [B, T]) and optional labels.") var input: String
    @Option(help: "Output safetensors file.") var dump: String
    @Flag(help: "Also dump grad.<name> for every parameter (gradient of the plain cross-entropy).") var grads = false

    func run() throws {
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: input) } catch { fail("\(error)") }
        let t = file.entries["input_ids"]?.shape.last ?? 1
        let m = try loadModel(model, positions: Swift.max(t, 1))
        do {
            try ForwardDump.run(model: m, input: input, output: dump, grads: grads)
        } catch let e as CheckpointError {
            fail(e.description)
        }
        print("wrote \(dump)")
    }
}

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Sample from a model with the MLA latent KV cache; prints the cache bytes per token.")

    @Option(help: "A DeepTrain checkpoint (.h5), a Hugging Face model directory, or a preset (random weights).") var checkpoint: String
    @Option(help: "Prompt text, as bytes (byte-level vocabularies).") var prompt: String?
    @Option(help: "Prompt as comma-separated token ids.") var promptIds: String?
    @Option(help: "Tokens to generate at most.") var maxNewTokens = 64
    @Option(help: "0 for greedy.") var temperature: Float = 0
    @Option(help: "Nucleus sampling mass.") var topP: Float = 1
    @Option(help: "Sampling seed.") var seed: UInt64 = 0
    @Option(help: "Comma-separated stop token ids.") var stop: String?
    @Option(help: "latent (MLA's compressed cache) or full (decompressed per-head K/V).") var cache: CacheKind = .latent

    func run() throws {
        let ids: [Int]
        if let promptIds {
            let parsed = promptIds.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !parsed.isEmpty, parsed.allSatisfy({ $0 != nil }) else {
                throw ValidationError("--prompt-ids \(promptIds): expected comma-separated integers")
            }
            ids = parsed.map { $0! }
        } else if let prompt {
            ids = prompt.utf8.map(Int.init)
        } else {
            throw ValidationError("give --prompt TEXT or --prompt-ids 1,2,3")
        }
        guard !ids.isEmpty else { throw ValidationError("the prompt is empty") }
        let stops = Set((stop ?? "").split(separator: ",").compactMap { Int($0) })
        let model = try loadModel(checkpoint, positions: ids.count + maxNewTokens)
        if let bad = ids.first(where: { $0 < 0 || $0 >= model.config.vocabSize }) {
            fail("prompt token \(bad) is outside the vocabulary of \(model.config.vocabSize)")
        }
        let r = model.generate(prompt: ids, maxNew: maxNewTokens, sampler: Sampler(temperature: temperature, topP: topP, seed: seed),
                               stop: stops, cache: cache)
        if prompt != nil && model.config.vocabSize <= 256 {
            print(String(decoding: r.tokens.map { UInt8(clamping: $0) }, as: UTF8.self))
        } else {
            print(r.tokens.map(String.init).joined(separator: ","))
        }
        let tps = Double(r.tokens.count) / Swift.max(r.decodeSeconds, 1e-9)
        FileHandle.standardError.write(Data(String(format: "%d tokens, %.1f tokens/s decode, cache %d bytes/token (%@, float32)\n",
                                                   r.tokens.count, tps, r.cacheBytesPerToken, cache.rawValue).utf8))
    }
}

extension CacheKind: ExpressibleByArgument {}

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
        do {
            if isDir.boolValue {
                guard destination.hasSuffix(".h5") else { fail("\(destination): converting a directory needs an .h5 destination") }
                let model = try HFDirectory.load(source, positions: 1)
                try CheckpointStore.save(model, to: destination)
            } else {
                let (model, _) = try CheckpointStore.load(source, positions: 1)
                try HFDirectory.save(model, to: destination)
            }
        } catch let e as CheckpointError {
            fail(e.description)
        } catch let e as ConfigError {
            fail(e.description)
        }
        print("wrote \(destination)")
    }
}

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Step, stage, config, tensors and a SHA-256 digest of the model weights of a checkpoint.")

    @Argument(help: "A DeepTrain .h5 checkpoint or a Hugging Face directory.") var checkpoint: String
    @Flag(help: "List every tensor with its shape.") var tensors = false

    func run() throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: checkpoint, isDirectory: &isDir) else { fail("\(checkpoint): does not exist") }
        let model: DeepSeekV2ForCausalLM
        var state = CheckpointStore.State()
        do {
            if isDir.boolValue { model = try HFDirectory.load(checkpoint, positions: 1) } else {
                (model, state) = try CheckpointStore.load(checkpoint, positions: 1)
            }
        } catch let e as CheckpointError { fail(e.description) } catch let e as ConfigError { fail(e.description) }
        let named = model.namedParameters()
        print("checkpoint   \(checkpoint)")
        if !isDir.boolValue {
            print("stage        \(state.stage.isEmpty ? "-" : state.stage) (index \(state.stageIndex)), step \(state.step), global step \(state.globalStep), tokens \(state.tokens)")
        }
        let c = model.config
        print("model        \(c.numHiddenLayers) layers, hidden \(c.hiddenSize), \(c.numAttentionHeads) heads, \(c.nSharedExperts) shared + \(c.nRoutedExperts) routed experts, vocab \(c.vocabSize)")
        print("parameters   \(model.parameterCount) in \(named.count) tensors")
        print("digest       sha256:\(weightsDigest(named))")
        if tensors { for (n, t) in named { print("  \(n) \(t.shape)") } }
    }
}
