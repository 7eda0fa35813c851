import Foundation
import Testing
@testable import Data

@Suite struct TokenizerTests {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizer").path

    struct Parity: Decodable { let text: String; let ids: [Int]; let decoded: String }

    /// The same ids as Hugging Face `tokenizers` (tools/golden_tokenizer.py) on a text mixing
    /// English, Chinese, Japanese, Korean, accents, code, digits, emoji and special tokens.
    @Test func matchesHuggingFaceTokenizers() throws {
        let tok = try Tokenizer(path: "\(Self.dir)/tokenizer.json")
        let p = try JSONDecoder().decode(Parity.self, from: Data(contentsOf: URL(fileURLWithPath: "\(Self.dir)/parity.json")))
        #expect(tok.encode(p.text) == p.ids)
        #expect(tok.decode(p.ids) == p.text)
        #expect(tok.decode(p.ids) == p.decoded)
    }

    @Test func saveAndReloadKeepTheIds() throws {
        let tok = try Tokenizer(path: "\(Self.dir)/tokenizer.json")
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("dt-tok-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        try tok.save(out)
        let again = try Tokenizer(path: out)
        let text = "Mixed 文本 with 12345 digits and émojis 🚀 <｜end▁of▁sentence｜>"
        #expect(again.encode(text) == tok.encode(text))
    }

    @Test func trainingLearnsMergesAndRoundTrips() throws {
        let texts = (0..<200).map { "\($0 % 97)+\($0 % 89)=\($0 % 97 + $0 % 89)\nthe answer is yes" }
        let tok = try Tokenizer.train(texts: texts, vocabSize: 320, specialTokens: ["<eos>"])
        #expect(tok.vocabularySize == 320)
        let sample = "12+34=46\nthe answer is yes<eos>"
        let ids = tok.encode(sample)
        #expect(tok.decode(ids) == sample)
        #expect(ids.count < sample.utf8.count / 2, "merges compress the training distribution: \(ids.count) ids")
        #expect(ids.last == tok.id(of: "<eos>"))
        // Deterministic.
        #expect(try Tokenizer.train(texts: texts, vocabSize: 320, specialTokens: ["<eos>"]).encode(sample) == ids)
    }

    @Test func badFilesNameTheProblem() throws {
        let p = FileManager.default.temporaryDirectory.appendingPathComponent("dt-tok-bad-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: p) }
        try #"{"model": {"type": "Unigram"}}"#.write(toFile: p, atomically: true, encoding: .utf8)
        do {
            _ = try Tokenizer(path: p)
            Issue.record("accepted a Unigram model")
        } catch let e as TokenizerError {
            #expect(e.description.contains(p) && e.description.contains("BPE"))
        }
    }
}
