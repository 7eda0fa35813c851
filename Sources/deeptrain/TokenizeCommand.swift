import ArgumentParser
import Foundation
import FileSafety
import Data

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Text on stdin → token ids as a JSON array (or, with --decode, a JSON array of ids → text).",
        discussion: """
            The ids are those Hugging Face tokenizers' `encode(text)` gives: added tokens, normalizer, \
            pre-tokenizer, BPE model, then the post-processor's special tokens (unless \
            --no-add-special-tokens). With --jsonl every input line is one text (a JSON string or an \
            object with "text") and every output line its ids.

            With --chat every input line is one conversation, {"messages": [...]} (and optionally \
            "tools": [...]), rendered with the directory's chat template as transformers' \
            apply_chat_template renders it; the output line is its ids (apply_chat_template(messages, \
            tokenize=True)) or, with --render, the rendered text as a JSON string.
            """)

    @Option(help: "A Hugging Face tokenizer.json, or a directory holding one.") var tokenizer: String
    @Flag(help: "Read a JSON array of ids and print the text.") var decode = false
    @Flag(inversion: .prefixedNo, help: "Add the post-processor's special tokens (tokenizers' add_special_tokens).")
    var addSpecialTokens = true
    @Flag(help: "With --decode: leave special tokens out of the text.") var skipSpecialTokens = false
    @Flag(help: "One text per input line (a JSON string or {\"text\": ...}); one JSON array of ids per output line.")
    var jsonl = false
    @Flag(help: "One conversation per input line ({\"messages\": [...]}), rendered with the chat template of --tokenizer DIR.")
    var chat = false
    @Flag(help: "With --chat: end with the template's assistant header (add_generation_prompt).") var addGenerationPrompt = false
    @Flag(help: "With --chat: print the rendered text (a JSON string per line) instead of ids.") var render = false

    func validate() throws {
        if (addGenerationPrompt || render) && !chat { throw ValidationError("--add-generation-prompt and --render go with --chat") }
        if chat && (decode || jsonl) { throw ValidationError("--chat reads conversations; it does not combine with --decode or --jsonl") }
    }

    func run() throws {
        if chat { return try runChat() }
        let tok = try Tokenizer(path: tokenizer)
        let input = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        if decode {
            guard let ids = (try? JSONSerialization.jsonObject(with: Data(input.utf8))) as? [Int] else {
                throw fail("stdin: expected a JSON array of integer token ids")
            }
            if let bad = ids.first(where: { $0 < 0 || $0 >= tok.vocabularySize }) {
                throw fail("stdin: token id \(bad) is outside the vocabulary of \(tok.vocabularySize)")
            }
            print(try tok.decode(ids, skipSpecial: skipSpecialTokens), terminator: "")
            return
        }
        guard jsonl else {
            print(Self.json(try tok.encode(input, addSpecialTokens: addSpecialTokens)))
            return
        }
        var out = ""
        for (i, line) in input.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
            let v = try? JSONSerialization.jsonObject(with: Data(line.utf8), options: [.fragmentsAllowed])
            guard let text = (v as? String) ?? ((v as? [String: Any])?["text"] as? String) else {
                throw fail("stdin:\(i + 1): expected a JSON string or an object with a string \"text\"")
            }
            out += Self.json(try tok.encode(text, addSpecialTokens: addSpecialTokens)) + "\n"
        }
        FileHandle.standardOutput.write(Data(out.utf8))
    }

    func runChat() throws {
        let chatTokenizer = try ChatTokenizer(path: tokenizer)
        guard let template = chatTokenizer.template else {
            throw fail("\(tokenizer): has no chat template (expected chat_template.jinja, chat_template.json or tokenizer_config.json's chat_template)")
        }
        let input = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        var out = ""
        for (i, line) in input.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
        where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            let at = "stdin:\(i + 1)"
            let value: JinjaValue
            do { value = try ChatTemplate.json(String(line)) } catch { throw fail("\(at): not JSON: \(error)") }
            guard let messages = value["messages"], case .array = messages else {
                throw fail("\(at): expected {\"messages\": [{\"role\": ..., \"content\": ...}, ...]}")
            }
            do {
                let text = try chatTokenizer.render(messages, addGenerationPrompt: addGenerationPrompt, tools: value["tools"])
                out += render ? JinjaValue.string(text).jsonText + "\n"
                    : Self.json(try chatTokenizer.tokenizer.encode(text, addSpecialTokens: false)) + "\n"
            } catch let e as TemplateError {
                if e.raised { throw fail("\(at): the chat template raised: \(e.message)") }
                throw fail("\(at): \(template.origin): \(e.description)")
            }
        }
        FileHandle.standardOutput.write(Data(out.utf8))
    }

    static func json(_ ids: [Int]) -> String { "[" + ids.map(String.init).joined(separator: ", ") + "]" }
}
