import Foundation
import Testing
@testable import Data
@testable import Tokenizers
@testable import Jinja

/// Ids, special tokens and decoded text equal Hugging Face `tokenizers`' for tokenizers in five
/// published styles (tools/golden_tokenizers.py), on a 24 kB mixed-language corpus plus texts
/// with CRLF, non-breaking spaces, combining marks, CJK and emoji.
@Suite struct TokenizerParityTests {
    static let styles = ["gpt2", "llama3", "deepseek", "spm-bpe", "metaspace"]

    struct Expected: Decodable {
        let texts: [String]
        let ids: [[Int]]
        let corpus_ids: [Int]
        let with_special: [[Int]]
        let decoded: [String]
        let decoded_skip_special: [String]
    }

    @Test(arguments: styles) func matchesTokenizers(style: String) throws {
        let tok = try Tokenizer(path: Fixtures.path("tokenizers/\(style)"))
        let e = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tokenizers/\(style)/expected.json"))))
        var wrong = 0
        for (i, text) in e.texts.enumerated() {
            let ids = try tok.encode(text)
            if ids != e.ids[i] {
                wrong += 1
                if wrong <= 3 { Issue.record("\(style) text \(i) \(text.debugDescription.prefix(60)): \(ids.prefix(20)) vs \(e.ids[i].prefix(20))") }
            }
            #expect(try tok.decode(e.ids[i]) == e.decoded[i], "\(style) decode \(i)")
        }
        #expect(wrong == 0, "\(wrong) of \(e.texts.count) texts differ")
        for (i, ids) in e.with_special.enumerated() {
            #expect(try tok.encode(e.texts[i], addSpecialTokens: true) == ids, "\(style) with special tokens, text \(i)")
            #expect(try tok.decode(ids, skipSpecial: true) == e.decoded_skip_special[i], "\(style) skip special, text \(i)")
        }
    }

    /// The whole corpus as one text (long pieces where there is no pre-tokenizer) gives
    /// tokenizers' ids, and decoding gives the text back exactly.
    @Test(arguments: styles) func wholeCorpus(style: String) throws {
        let tok = try Tokenizer(path: Fixtures.path("tokenizers/\(style)"))
        let e = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tokenizers/\(style)/expected.json"))))
        let corpus = try String(contentsOfFile: Fixtures.path("tokenizers/corpus.txt"), encoding: .utf8)
        let ids = try tok.encode(corpus)
        #expect(ids == e.corpus_ids, "\(ids.count) ids, tokenizers \(e.corpus_ids.count)")
        #expect(try tok.decode(ids) == corpus)
    }

    /// A tokenizer saved and read back encodes the same.
    @Test func saveAndReloadKeepTheIds() throws {
        let tok = try Tokenizer(path: Fixtures.path("tokenizers/deepseek"))
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("dt-tok-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        try tok.save(out)
        let again = try Tokenizer(path: out)
        let text = "Mixed 文本 with 12345 digits and émojis 🚀 <｜end▁of▁sentence｜>"
        #expect(try again.encode(text) == tok.encode(text))
        #expect(again.vocabularySize == tok.vocabularySize)
    }
}

/// Each normalizer, pre-tokenizer behaviour, added-token flag, post-processor and decoder on its
/// own, against `tokenizers` (components.json: the same base model with one component changed).
@Suite struct TokenizerComponentTests {
    nonisolated(unsafe) static let fixture: [String: Any] = (try? Fixtures.json("tokenizers/components.json")) as? [String: Any] ?? [:]
    nonisolated(unsafe) static let cases: [[String: Any]] = fixture["cases"] as? [[String: Any]] ?? []
    static let names: [String] = cases.compactMap { $0["name"] as? String }

    @Test func fixtureIsThere() { #expect(Self.cases.count > 50) }

    @Test(arguments: names) func component(name: String) throws {
        let c = Self.cases.first { $0["name"] as? String == name }!
        var model = Self.fixture["model"] as! [String: Any]
        for (k, v) in (c["model_options"] as? [String: Any]) ?? [:] { model[k] = v }
        let json: [String: Any] = [
            "version": "1.0", "truncation": NSNull(), "padding": NSNull(), "model": model,
            "normalizer": c["normalizer"] ?? NSNull(), "pre_tokenizer": c["pre_tokenizer"] ?? NSNull(),
            "post_processor": c["post_processor"] ?? NSNull(), "decoder": c["decoder"] ?? NSNull(),
            "added_tokens": c["added_tokens"] ?? [],
        ]
        let tok = try Tokenizer(json: JSONSerialization.data(withJSONObject: json), source: name)
        let texts = Self.fixture["texts"] as! [String]
        let ids = c["ids"] as! [[Int]], special = c["with_special"] as! [[Int]]
        let decoded = c["decoded"] as! [String], skip = c["decoded_skip_special"] as! [String]
        for (i, t) in texts.enumerated() {
            #expect(try tok.encode(t) == ids[i], "\(name): \(t.debugDescription)")
            #expect(try tok.encode(t, addSpecialTokens: true) == special[i], "\(name) with special tokens: \(t.debugDescription)")
            #expect(try tok.decode(ids[i]) == decoded[i], "\(name) decode: \(t.debugDescription)")
            #expect(try tok.decode(special[i], skipSpecial: true) == skip[i], "\(name) decode skipping special: \(t.debugDescription)")
        }
    }
}
