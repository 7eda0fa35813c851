import Foundation
import Testing
@testable import Data
@testable import Tokenizers
@testable import Jinja

@Suite struct TokenizerTests {
    @Test func trainingLearnsMergesAndRoundTrips() throws {
        let texts = (0..<200).map { "\($0 % 97)+\($0 % 89)=\($0 % 97 + $0 % 89)\nthe answer is yes" }
        let tok = try Tokenizer.train(texts: texts, vocabSize: 320, specialTokens: ["<eos>"])
        #expect(tok.vocabularySize == 320)
        let sample = "12+34=46\nthe answer is yes<eos>"
        let ids = try tok.encode(sample)
        #expect(try tok.decode(ids) == sample)
        #expect(ids.count < sample.utf8.count / 2, "merges compress the training distribution: \(ids.count) ids")
        #expect(ids.last == tok.id(of: "<eos>"))
        // Deterministic.
        #expect(try Tokenizer.train(texts: texts, vocabSize: 320, specialTokens: ["<eos>"]).encode(sample) == ids)
    }

    static func expectError(_ json: String, mentions words: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try Tokenizer(json: Data(json.utf8), source: "my/tokenizer.json")
            Issue.record("accepted \(json)", sourceLocation: sourceLocation)
        } catch let e as TokenizerError {
            for w in ["my/tokenizer.json"] + words {
                #expect(e.description.contains(w), "\(e.description) should mention \(w)", sourceLocation: sourceLocation)
            }
        } catch {
            Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
        }
    }

    /// Added tokens match leftmost, then longest; the first of two with the same text wins;
    /// `lstrip` takes spaces back only to the previous match.
    @Test func addedTokensLeftmostLongest() throws {
        let tokens = [AddedToken(content: "ab", id: 10, special: true), AddedToken(content: "abc", id: 11, special: true),
                      AddedToken(content: "b", id: 12, special: true), AddedToken(content: "abc", id: 13, special: true),
                      AddedToken(content: " x", id: 14, special: true, lstrip: true)]
        let m = try AddedTokenMatcher(tokens, normalizer: nil)
        let text = [UInt32](scalarsOf: "zabcab bab  x x")
        let segments = m.split(text).map { seg -> String in
            switch seg {
            case .token(let id): return "#\(id)"
            case .text(let r): return Array(text[r]).string
            }
        }
        #expect(segments == ["z", "#11", "#10", " ", "#12", "#10", "#14", "#14"])
    }

    static let model = #""model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}"#

    /// An unsupported component stops with its JSON path and type; a bad file names what is wrong.
    @Test func badFilesNameTheProblem() {
        Self.expectError(#"{"model": {"type": "Unigram"}}"#, mentions: ["model.type", "Unigram", "BPE"])
        Self.expectError("{\(Self.model), \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}, {\"type\": \"Precompiled\"}]}}",
                         mentions: ["normalizer.normalizers[1]", "Precompiled"])
        Self.expectError("{\(Self.model), \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"UnicodeScripts\"}]}}",
                         mentions: ["pre_tokenizer.pretokenizers[0]", "UnicodeScripts"])
        Self.expectError("{\(Self.model), \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(a\"}, \"behavior\": \"Isolated\"}}",
                         mentions: ["pre_tokenizer.pattern", "missing ')'"])
        Self.expectError("{\(Self.model), \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": \"Sideways\"}}",
                         mentions: ["pre_tokenizer.behavior", "Sideways"])
        Self.expectError("{\(Self.model), \"decoder\": {\"type\": \"CTC\"}}", mentions: ["decoder", "CTC"])
        Self.expectError("{\(Self.model), \"post_processor\": {\"type\": \"Mystery\"}}", mentions: ["post_processor", "Mystery"])
        Self.expectError(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}"#, mentions: ["model.merges[0]", "b"])
        Self.expectError("not json", mentions: ["JSON"])
    }
}
