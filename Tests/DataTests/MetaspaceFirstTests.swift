import Foundation
import Testing
@testable import Data
@testable import Tokenizers
@testable import Jinja

/// Metaspace's `prepend_scheme: first` adds the replacement only to a piece that starts at
/// offset 0 of the original text, as tokenizers decides it (tools/golden_metaspace_first.py):
/// not after an added token, not after a Strip (or a Replace with nothing) removed the text's
/// first characters; Strip on the right, Lowercase or NFD do not move the start.
@Suite struct MetaspaceFirstTests {
    nonisolated(unsafe) static let fixture: [String: Any] = (try? Fixtures.json("tokenizers/metaspace_first.json")) as? [String: Any] ?? [:]
    nonisolated(unsafe) static let cases: [[String: Any]] = fixture["cases"] as? [[String: Any]] ?? []
    static let names: [String] = cases.compactMap { $0["name"] as? String }

    @Test func fixtureIsThere() { #expect(Self.cases.count >= 8) }

    @Test(arguments: names) func matchesTokenizers(name: String) throws {
        let c = try #require(Self.cases.first { $0["name"] as? String == name })
        let json: [String: Any] = [
            "version": "1.0", "truncation": NSNull(), "padding": NSNull(), "model": Self.fixture["model"]!,
            "normalizer": c["normalizer"] ?? NSNull(), "pre_tokenizer": c["pre_tokenizer"]!,
            "post_processor": NSNull(), "decoder": NSNull(), "added_tokens": c["added_tokens"]!,
        ]
        let tok = try Tokenizer(json: JSONSerialization.data(withJSONObject: json), source: name)
        let texts = try #require(Self.fixture["texts"] as? [String])
        let ids = try #require(c["ids"] as? [[Int]]), tokens = try #require(c["tokens"] as? [[String]])
        for (i, t) in texts.enumerated() {
            let got = try tok.encode(t)
            #expect(got == ids[i], "\(name): \(t.debugDescription): \(got.map { tok.token(of: $0) ?? "?" }) vs \(tokens[i])")
        }
    }
}
