import ArgumentParser
import Foundation
import FileSafety
import DeepSeek
import Checkpoint
import Training
import Data

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
    @Flag(help: "Treat --prompt as a user message: render it with the chat template (add_generation_prompt), stop at the eos token, print the answer's text.")
    var chat = false
    @Option(help: "The tokenizer for --chat (default: the model directory's, or the one stored in the checkpoint).") var tokenizer: String?

    func run() throws {
        if chat { return try runChat() }
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
        let model = try loadModel(checkpoint, positions: ids.count + maxNewTokens, mtp: false)
        if let bad = ids.first(where: { $0 < 0 || $0 >= model.config.vocabSize }) {
            throw fail("prompt token \(bad) is outside the vocabulary of \(model.config.vocabSize)")
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

    func runChat() throws {
        guard let prompt, promptIds == nil else { throw ValidationError("--chat takes --prompt TEXT (the user's message)") }
        let tok = try loadChatTokenizer(checkpoint: checkpoint, tokenizer: tokenizer)
        guard tok.template != nil, let eos = tok.eosId else {
            throw fail("\(tokenizer ?? checkpoint): --chat needs a chat template and an eos_token (tokenizer_config.json)")
        }
        let ids = try tok.applyChatTemplate(.array([.object(JinjaObject([("role", .string("user")), ("content", .string(prompt))]))]),
                                            addGenerationPrompt: true)
        let model = try loadModel(checkpoint, positions: ids.count + maxNewTokens, mtp: false)
        guard tok.tokenizer.vocabularySize <= model.config.vocabSize else {
            throw fail("the tokenizer has \(tok.tokenizer.vocabularySize) ids, more than the model's vocab_size \(model.config.vocabSize)")
        }
        let stops = Set((stop ?? "").split(separator: ",").compactMap { Int($0) }).union([eos])
        let r = model.generate(prompt: ids, maxNew: maxNewTokens, sampler: Sampler(temperature: temperature, topP: topP, seed: seed),
                               stop: stops, cache: cache)
        print(try tok.tokenizer.decode(r.tokens, skipSpecial: true))
        let tps = Double(r.tokens.count) / Swift.max(r.decodeSeconds, 1e-9)
        FileHandle.standardError.write(Data(String(format: "%d tokens%@, %.1f tokens/s decode, cache %d bytes/token (%@, float32)\n",
                                                   r.tokens.count, r.tokens.count < maxNewTokens ? " (stopped at eos)" : "", tps,
                                                   r.cacheBytesPerToken, cache.rawValue).utf8))
    }
}

extension CacheKind: ExpressibleByArgument {}
