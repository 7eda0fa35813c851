import Foundation
import Testing
@testable import Data
@testable import Tokenizers
@testable import Jinja

/// The regex machine finds what Oniguruma finds (through tokenizers' Split, tools/golden_tokenizers.py):
/// `$` before `\n` only, lookahead and lookbehind, case-insensitive groups, lazy, possessive and
/// atomic repetition, Unicode categories, on text with CRLF, NBSP, CJK, emoji and combining marks.
@Suite struct TokenRegexTests {
    struct Case: Decodable { let pattern: String; let text: String; let pieces: [String]; let matches: [String] }

    @Test func matchesOniguruma() throws {
        let cases = try JSONDecoder().decode([Case].self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tokenizers/regex.json"))))
        #expect(cases.count > 100)
        for c in cases {
            let re = try TokenRegex(c.pattern)
            let text = [UInt32](scalarsOf: c.text)
            let pieces = try SplitPattern.regex(re).pieces(text).map { Array(text[$0.0]).string }.filter { !$0.isEmpty }
            #expect(pieces == c.pieces, "\(c.pattern) on \(c.text.debugDescription)")
            let matches = try SplitPattern.regex(re).pieces(text).filter(\.1).map { Array(text[$0.0]).string }.filter { !$0.isEmpty }
            #expect(matches == c.matches, "matches of \(c.pattern) on \(c.text.debugDescription)")
        }
    }

    @Test func unsupportedSyntaxIsNamed() {
        for (p, words) in [("(a", "missing ')'"), ("\\p{Greek}", "Greek"), ("a)", "unbalanced"), ("[a-", "missing ']'"),
                           ("(?<=a+)b", "fixed length"), ("\\1", "back-references"), ("*a", "nothing to repeat")] {
            do {
                _ = try TokenRegex(p)
                Issue.record("accepted \(p)")
            } catch {
                #expect(error.description.contains(words), "\(p): \(error)")
                #expect(error.description.contains(p.debugDescription), "\(p): \(error)")
            }
        }
    }
}
