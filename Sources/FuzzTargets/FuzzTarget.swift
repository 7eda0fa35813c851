import Foundation
import Checkpoint
import Data
import DeepSeek
import Training

/// Every parser a downloaded or hand-written file reaches, each as one function of bytes. A
/// thrown error is the right answer to a bad input; a crash, a hang or a runaway allocation is
/// a bug. The fuzz driver (`deeptrain-fuzz`, `make fuzz`) mutates inputs and runs these; the
/// suite replays every committed input through them (Tests/FuzzTests).
package enum FuzzTarget: String, CaseIterable, Sendable {
    /// A `.safetensors` file: header, offsets, dtypes, the tensors' bytes.
    case safetensors
    /// A `model.safetensors.index.json` beside a small valid shard and config.
    case safetensorsIndex = "safetensors-index"
    /// A DeepTrain HDF5 checkpoint, read through the validating reader (`verify`).
    case hdf5
    /// A Hugging Face `config.json`.
    case config
    /// A `tokenizer.json`, then encoding and decoding a fixed text.
    case tokenizer
    /// A chat template rendered on fixed conversations, with and without tools.
    case template
    /// A YAML recipe.
    case recipe
    /// Chat and prompt JSONL data files.
    case jsonl
    /// Preference-pair JSONL (a reward stage's data).
    case preferences

    /// Runs the target on one input. A thrown error is the expected outcome of a bad input:
    /// its kind is returned ("ok" when none), so the driver can keep inputs that reach a new one.
    @discardableResult
    package func run(_ input: Data, scratch: FuzzScratch) -> String {
        do {
            switch self {
            case .safetensors: try FuzzTarget.safetensors(input, scratch)
            case .safetensorsIndex: try FuzzTarget.safetensorsIndex(input, scratch)
            case .hdf5: try FuzzTarget.hdf5(input, scratch)
            case .config: try FuzzTarget.config(input, scratch)
            case .tokenizer: try FuzzTarget.tokenizer(input)
            case .template: try FuzzTarget.template(input)
            case .recipe: try FuzzTarget.recipe(input)
            case .jsonl: try FuzzTarget.jsonl(input, scratch)
            case .preferences: try FuzzTarget.preferences(input, scratch)
            }
            return "ok"
        } catch {
            return FuzzTarget.outcome(of: error)
        }
    }

    /// An error's type and the words of its message without digits, quotes or paths: what
    /// tells one rejection from another.
    static func outcome(of error: Error) -> String {
        let words = "\(error)".split(separator: " ").dropFirst().prefix(6).map { w in
            String(w.filter { !$0.isNumber && $0 != "\"" })
        }
        return "\(type(of: error)): " + words.joined(separator: " ")
    }

    static func safetensors(_ input: Data, _ scratch: FuzzScratch) throws {
        let path = try scratch.write(input, as: "x.safetensors")
        let file = try SafeTensorsFile(path: path)
        for name in file.names {
            if (try? file.tensor(name)) == nil { _ = try? file.integers(name) }
        }
    }

    static func safetensorsIndex(_ input: Data, _ scratch: FuzzScratch) throws {
        let dir = try scratch.modelDirectory()
        try input.write(to: URL(fileURLWithPath: (dir as NSString).appendingPathComponent("model.safetensors.index.json")))
        let weights = try HFDirectory.Weights(dir)
        try weights.check(DeepSeekForCausalLM.parameterShapes(weights.config))
    }

    static func hdf5(_ input: Data, _ scratch: FuzzScratch) throws {
        let path = try scratch.write(input, as: "x.h5")
        _ = try CheckpointStore.verify(path)
    }

    static func config(_ input: Data, _ scratch: FuzzScratch) throws {
        let path = try scratch.write(input, as: "config.json")
        let config = try DeepSeekConfig.load(path)
        _ = ModelPlan(config, sequenceLength: 64)
        _ = DeepSeekForCausalLM.parameterShapes(config)
    }

    static func tokenizer(_ input: Data) throws {
        let tok = try Tokenizer(json: input, source: "tokenizer.json")
        let ids = try tok.encode(FuzzTarget.sampleText, addSpecialTokens: true)
        _ = try tok.decode(ids)
        _ = try tok.decode(Array(0..<Swift.min(tok.vocabularySize, 300)), skipSpecial: true)
    }

    static func template(_ input: Data) throws {
        let template = try ChatTemplate(source: String(decoding: input, as: UTF8.self), origin: "chat_template.jinja")
        // The first failure is the outcome: a hostile template fails on every conversation alike.
        for (messages, tools) in FuzzTarget.conversations {
            for prompt in [false, true] {
                var variables: [String: JinjaValue] = ["bos_token": .string("<s>"), "eos_token": .string("</s>")]
                if let tools { variables["tools"] = tools }
                _ = try template.render(messages: messages, addGenerationPrompt: prompt, variables: variables)
            }
        }
    }

    static func recipe(_ input: Data) throws {
        _ = try Recipe.parse(String(decoding: input, as: UTF8.self), file: "recipe.yaml")
    }

    static func jsonl(_ input: Data, _ scratch: FuzzScratch) throws {
        let path = try scratch.write(input, as: "data.jsonl")
        // Both readers run; the chat reader's error, else the prompt reader's, is the outcome.
        let chat = Result { try ChatJSONL.loadNumbered(path, allowAnyRole: true) }
        let prompts = Result { try PromptJSONL.loadNumbered(path) }
        _ = try chat.get()
        _ = try prompts.get()
    }

    /// Preference pairs as a reward stage reads them: parsed, then each conversation rendered
    /// with the byte format and cut into rows.
    static func preferences(_ input: Data, _ scratch: FuzzScratch) throws {
        let path = try scratch.write(input, as: "pairs.jsonl")
        let pairs = try PreferenceJSONL.loadNumbered(path, allowAnyRole: false)
        for (pair, _) in pairs.prefix(64) {
            _ = pair.sharedPrompt
            for conv in [pair.chosen, pair.rejected] { _ = ByteChatFormat.render(conv).tokens.prefix(64) }
        }
    }

    /// Mixed scripts, spaces, digits, an added token's text, and a run that makes a
    /// backtracking regex such as `(a+)+$` explode.
    static let sampleText = "Hello, world! 12+34=46\n  東京 🚀 don't  <|im_start|>user\tx\u{0301} " + String(repeating: "a", count: 40) + "!"

    static let conversations: [(JinjaValue, JinjaValue?)] = {
        let plain = """
            [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"},
             {"role": "assistant", "content": "Hello"}, {"role": "user", "content": ""}]
            """
        let toolCall = """
            [{"role": "user", "content": "Weather?"},
             {"role": "assistant", "content": null, "tool_calls": [{"type": "function",
               "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
             {"role": "tool", "content": "18C"}]
            """
        let tools = """
            [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
            """
        return [((try? ChatTemplate.json(plain)) ?? .none, nil),
                ((try? ChatTemplate.json(toolCall)) ?? .none, try? ChatTemplate.json(tools))]
    }()
}
