import ArgumentParser
import Foundation
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
            """)

    @Option(help: "A Hugging Face tokenizer.json, or a directory holding one.") var tokenizer: String
    @Flag(help: "Read a JSON array of ids and print the text.") var decode = false
    @Flag(inversion: .prefixedNo, help: "Add the post-processor's special tokens (tokenizers' add_special_tokens).")
    var addSpecialTokens = true
    @Flag(help: "With --decode: leave special tokens out of the text.") var skipSpecialTokens = false
    @Flag(help: "One text per input line (a JSON string or {\"text\": ...}); one JSON array of ids per output line.")
    var jsonl = false

    func run() throws {
        let tok: Tokenizer
        do { tok = try Tokenizer(path: tokenizer) } catch let e as TokenizerError { fail(e.description) }
        let input = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        if decode {
            guard let ids = (try? JSONSerialization.jsonObject(with: Data(input.utf8))) as? [Int] else {
                fail("stdin: expected a JSON array of integer token ids")
            }
            if let bad = ids.first(where: { $0 < 0 || $0 >= tok.vocabularySize }) {
                fail("stdin: token id \(bad) is outside the vocabulary of \(tok.vocabularySize)")
            }
            print(tok.decode(ids, skipSpecial: skipSpecialTokens), terminator: "")
            return
        }
        guard jsonl else {
            print(Self.json(tok.encode(input, addSpecialTokens: addSpecialTokens)))
            return
        }
        var out = ""
        for (i, line) in input.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
            let v = try? JSONSerialization.jsonObject(with: Data(line.utf8), options: [.fragmentsAllowed])
            guard let text = (v as? String) ?? ((v as? [String: Any])?["text"] as? String) else {
                fail("stdin:\(i + 1): expected a JSON string or an object with a string \"text\"")
            }
            out += Self.json(tok.encode(text, addSpecialTokens: addSpecialTokens)) + "\n"
        }
        FileHandle.standardOutput.write(Data(out.utf8))
    }

    static func json(_ ids: [Int]) -> String { "[" + ids.map(String.init).joined(separator: ", ") + "]" }
}
