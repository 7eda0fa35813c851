import Foundation
import Testing
@testable import Data
@testable import Tokenizers
@testable import Jinja

/// The regex machine cannot hang: a search past its step budget (RegexBudget) throws, and a
/// tokenizer reports it as a TokenizerError naming the file and the pattern's JSON path.
@Suite struct RegexBudgetTests {
    static let aaa = String(repeating: "a", count: 40)

    /// Classic catastrophic patterns, each on an input that makes naive backtracking
    /// exponential (or of a high polynomial degree).
    static let catastrophic: [(pattern: String, text: String)] = [
        ("(a+)+$", aaa + "!"),
        ("(a|a)*b", aaa),
        ("(a|aa)+c", aaa),
        ("(.*a){20}", String(repeating: "a", count: 19) + String(repeating: "x", count: 40)),
        ("((a|b)+)*c", String(repeating: "ab", count: 20)),
        ("(x+x+)+y", String(repeating: "x", count: 40)),
        (#"(\w+\s?)*$"#, String(repeating: "word ", count: 8) + "!"),
        ("(?:a*|b)*c", aaa),
    ]

    @Test func catastrophicPatternsStop() throws {
        for (pattern, text) in Self.catastrophic {
            let re: TokenRegex
            do { re = try TokenRegex(pattern) } catch {
                // Oniguruma takes an unbounded repetition of a nullable body; this machine refuses it at parse time.
                #expect(error.description.contains("can match empty"), "\(pattern): \(error)")
                continue
            }
            do {
                _ = try re.matches(in: [UInt32](scalarsOf: text))
                Issue.record("\(pattern) on \(text.debugDescription) finished within its budget")
            } catch {
                #expect(error.pattern == pattern && error.resource == .steps, "\(error)")
                #expect(error.limit == RegexBudget.limit(forLength: text.unicodeScalars.count), "\(error)")
                #expect(error.description.contains(pattern.debugDescription), "\(error)")
            }
        }
    }

    /// The budget grows with the text, so an ordinary pattern on a long text is not stopped.
    @Test func budgetGrowsWithTheText() throws {
        #expect(RegexBudget.limit(forLength: 0) == RegexBudget.base)
        #expect(RegexBudget.limit(forLength: 1_000) == RegexBudget.base + 1_000 * RegexBudget.perScalar)
        #expect(RegexBudget.limit(forLength: Int.max) > 0)
        let re = try TokenRegex(#"\s*[\r\n]+|\s+(?!\S)|\s+"#)
        let spaces = [UInt32](repeating: 32, count: 20_000) + [97]
        var steps = RegexSteps()
        #expect(try re.matches(in: spaces, steps: &steps) == [0..<19_999, 19_999..<20_000])
        #expect(steps.total < 10 * spaces.count, "\(steps.total) steps")
    }

    /// A pattern that keeps ten backtrack entries per character runs out of stack, not steps:
    /// memory is bounded as time is.
    @Test func backtrackStackIsBounded() throws {
        let re = try TokenRegex("(?:" + String(repeating: "(?:|b)", count: 9) + "a)+")
        #expect(try re.matches(in: [UInt32](scalarsOf: "aaaa")) == [0..<4])
        do {
            _ = try re.matches(in: [UInt32](repeating: 97, count: 60_000))
            Issue.record("held 600,000 backtrack entries")
        } catch {
            #expect(error.resource == .stack && error.limit == RegexBudget.stackLimit(forLength: 60_000), "\(error)")
            #expect(error.description.contains("backtrack entries"), "\(error)")
        }
    }

    static let model = #""model": {"type": "BPE", "vocab": {"a": 0, "!": 1, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!": 2}, "merges": []}"#

    static func expectBudgetError(_ json: String, mentions words: [String], _ body: (Tokenizer) throws -> Void,
                                  sourceLocation: SourceLocation = #_sourceLocation) throws {
        let tok = try Tokenizer(json: Data(json.utf8), source: "hostile/tokenizer.json")
        do {
            try body(tok)
            Issue.record("finished within the budget", sourceLocation: sourceLocation)
        } catch let e as TokenizerError {
            for w in ["hostile/tokenizer.json", "(a+)+$", "regex steps"] + words {
                #expect(e.description.contains(w), "\(e.description) should mention \(w)", sourceLocation: sourceLocation)
            }
        }
    }

    /// Encoding and decoding report the budget as a TokenizerError naming the file and where
    /// in it the pattern is: a Split pre-tokenizer, a Replace normalizer, a Replace decoder.
    @Test func tokenizerNamesFileAndPath() throws {
        let split = #"{"type": "Split", "pattern": {"Regex": "(a+)+$"}, "behavior": "Isolated", "invert": false}"#
        let pre = #""pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, \#(split)]}"#
        try Self.expectBudgetError("{\(Self.model), \(pre)}", mentions: ["pre_tokenizer.pretokenizers[1].pattern.Regex"]) {
            _ = try $0.encode(Self.aaa + "!")
        }
        let replace = #"{"type": "Replace", "pattern": {"Regex": "(a+)+$"}, "content": "b"}"#
        try Self.expectBudgetError("{\(Self.model), \"normalizer\": \(replace)}", mentions: ["normalizer.pattern.Regex"]) {
            _ = try $0.encode(Self.aaa + "!")
        }
        try Self.expectBudgetError("{\(Self.model), \"decoder\": \(replace)}", mentions: ["decoder.pattern.Regex"]) {
            _ = try $0.decode([2])
        }
    }

    /// Counts, nesting and program sizes that would overflow the stack or allocate without
    /// bound are refused when the pattern is parsed.
    @Test func hostilePatternsAreRefusedAtParseTime() {
        let deep = String(repeating: "(", count: 10_000) + "a" + String(repeating: ")", count: 10_000)
        let deepClass = String(repeating: "[", count: 10_000) + "a" + String(repeating: "]", count: 10_000)
        for (p, words) in [("a{1000000000}", "100000"), ("a{99999999999999999999999}", "100000"), ("a{2,1000001}", "100000"),
                           ("(?:ab){100001,}", "100000"), (deep, "nested"), (deepClass, "nested"),
                           ("((a|b){1000}){1000}", "instructions"), ("a{2}{2}{2}", "quantifiers"),
                           (String(repeating: "a", count: 40_000), "characters")] {
            do {
                _ = try TokenRegex(p)
                Issue.record("accepted \(p.prefix(40))")
            } catch {
                #expect(error.description.contains(words), "\(p.prefix(40)): \(error.description.prefix(300))")
                #expect(error.description.count < 600, "the message quotes a long pattern in full")
            }
        }
    }

    /// Patterns at the limits still compile and match.
    @Test func patternsAtTheLimitsWork() throws {
        let depth = RegexLimits.nesting
        let nested = try TokenRegex(String(repeating: "(?:", count: depth) + "a+" + String(repeating: ")", count: depth))
        #expect(try nested.matches(in: [UInt32](scalarsOf: "baab")) == [1..<3])
        let counted = try TokenRegex("a{\(RegexLimits.repeatCount)}")
        #expect(try counted.matches(in: [UInt32](repeating: 97, count: RegexLimits.repeatCount + 1)) == [0..<RegexLimits.repeatCount])
        #expect(try TokenRegex("(?:ab){1,3}").matches(in: [UInt32](scalarsOf: "abababab")) == [0..<6, 6..<8])
    }
}
