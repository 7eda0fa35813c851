import ArgumentParser
import Foundation
import Data

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Text on stdin → token ids as a JSON array (or, with --decode, a JSON array of ids → text).")

    @Option(help: "A Hugging Face tokenizer.json (byte-level BPE).") var tokenizer: String
    @Flag(help: "Read a JSON array of ids and print the text.") var decode = false

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
            print(tok.decode(ids), terminator: "")
        } else {
            print("[" + tok.encode(input).map(String.init).joined(separator: ", ") + "]")
        }
    }
}
