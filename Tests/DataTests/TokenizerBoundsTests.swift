import Foundation
import Testing
@testable import Data
@testable import Tokenizers
@testable import Jinja

/// A tokenizer.json past a bound (file size, vocabulary, merges, added tokens, ids, pattern
/// length) is a TokenizerError naming the file and the key, found before the tables are built.
@Suite struct TokenizerBoundsTests {
    static let model = #""model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}"#

    static func expectRefused(_ json: String, _ bounds: TokenizerBounds = .standard, mentions words: [String],
                              sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try Tokenizer(json: Data(json.utf8), source: "big/tokenizer.json", bounds: bounds)
            Issue.record("accepted", sourceLocation: sourceLocation)
        } catch let e as TokenizerError {
            for w in ["big/tokenizer.json"] + words {
                #expect(e.description.contains(w), "\(e.description) should mention \(w)", sourceLocation: sourceLocation)
            }
        } catch {
            Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func eachBoundNamesItsKey() {
        var b = TokenizerBounds()
        b.vocabulary = 2
        Self.expectRefused("{\(Self.model)}", b, mentions: ["model.vocab", "3 entries", "2 allowed"])
        b = TokenizerBounds()
        b.merges = 0
        Self.expectRefused("{\(Self.model)}", b, mentions: ["model.merges", "1 merges"])
        b = TokenizerBounds()
        b.addedTokens = 1
        Self.expectRefused(#"{\#(Self.model), "added_tokens": [{"id": 3, "content": "<s>"}, {"id": 4, "content": "</s>"}]}"#, b,
                           mentions: ["added_tokens", "2 tokens"])
        b = TokenizerBounds()
        b.addedTokenLength = 3
        Self.expectRefused(#"{\#(Self.model), "added_tokens": [{"id": 3, "content": "<s>"}, {"id": 4, "content": "</s>"}]}"#, b,
                           mentions: ["added_tokens[1].content", "4 characters"])
        b = TokenizerBounds()
        b.addedTokenCharacters = 6
        Self.expectRefused(#"{\#(Self.model), "added_tokens": [{"id": 3, "content": "<s>"}, {"id": 4, "content": "</s>"}]}"#, b,
                           mentions: ["added_tokens", "6 characters"])
        b = TokenizerBounds()
        b.fileBytes = 10
        Self.expectRefused("{\(Self.model)}", b, mentions: ["bytes", "10"])
        b = TokenizerBounds()
        b.patternLength = 4
        Self.expectRefused(#"{\#(Self.model), "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "a|b|c"}, "behavior": "Isolated"}}"#, b,
                           mentions: ["pre_tokenizer.pattern.Regex", "5 characters"])
        Self.expectRefused(#"{\#(Self.model), "normalizer": {"type": "Replace", "pattern": {"String": "abcde"}, "content": ""}}"#, b,
                           mentions: ["normalizer.pattern.String", "5 characters"])
    }

    /// Ids index embedding tables: a negative or huge one is refused, not trapped on.
    @Test func idsAreBounded() {
        Self.expectRefused(#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 4294967296}, "merges": []}}"#,
                           mentions: ["model.vocab", "4294967296", "\"b\""])
        Self.expectRefused(#"{"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}}"#, mentions: ["model.vocab", "-1"])
        Self.expectRefused(#"{\#(Self.model), "added_tokens": [{"id": 99999999999, "content": "<s>"}]}"#,
                           mentions: ["added_tokens[0].id", "99999999999"])
    }

    /// A file is refused by its size before it is read.
    @Test func fileSizeIsCheckedBeforeReading() throws {
        var b = TokenizerBounds()
        b.fileBytes = 1_000
        let path = Fixtures.path("tokenizers/gpt2/tokenizer.json")
        do {
            _ = try Tokenizer(path: path, bounds: b)
            Issue.record("accepted")
        } catch let e as TokenizerError {
            #expect(e.source == path && e.message.contains("1000"), "\(e)")
        }
        #expect(throws: Never.self) { _ = try Tokenizer(path: path) }
    }

    /// The standard bounds are far above published tokenizers and far below memory exhaustion.
    @Test func standardBounds() {
        let b = TokenizerBounds.standard
        #expect(b.fileBytes == 512 << 20 && b.vocabulary >= 20 * 262_144 && b.merges >= 20 * 280_147 && b.addedTokens >= 20 * 818)
        #expect(b.idLimit <= Int(Int32.max) && b.idLimit >= b.vocabulary + b.addedTokens)
    }
}
