import Foundation
import Testing
@testable import Data
@testable import Tokenizers
@testable import Jinja

/// The published pre-tokenizer patterns stay linear on long degenerate text: the regex
/// machine's steps (RegexSteps, not wall-clock time) on 1M characters are at most 12 times
/// those on 100K, and far below the step budget.
@Suite struct RegexLinearityTests {
    /// Qwen2's Split pattern (Llama 3's with single digits).
    static let qwen2 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    static func preTokenizer(_ name: String) throws -> PreTokenizer {
        if name == "qwen2" {
            return .sequence([.split(.regex(try TokenRegex(qwen2)), .isolated, invert: false),
                              .byteLevel(addPrefixSpace: false, useRegex: false)])
        }
        return try #require(try Tokenizer(path: Fixtures.path("tokenizers/\(name)")).preTokenizer)
    }

    static let mixedSample = "Hello, world! It's 2026-12-07 and we'll test 12345 tokens.\n\t  深度求索 DeepSeek 🚀  x²\r\n\n"

    /// `count` scalars of each degenerate kind.
    static func input(_ kind: String, _ count: Int) -> [UInt32] {
        func cycle(_ s: String) -> [UInt32] {
            let u = [UInt32](scalarsOf: s)
            return (0..<count).map { u[$0 % u.count] }
        }
        switch kind {
        case "letters": return [UInt32](repeating: 97, count: count)
        case "spaces": return [UInt32](repeating: 32, count: count)
        case "spaces then a letter": return [UInt32](repeating: 32, count: count - 1) + [97]
        case "digits": return cycle("1234567890")
        case "newlines": return [UInt32](repeating: 10, count: count)
        case "space-newline": return cycle(" \n")
        default: return cycle(mixedSample)
        }
    }

    static let kinds = ["letters", "spaces", "spaces then a letter", "digits", "newlines", "space-newline", "mixed"]

    static func steps(_ pre: PreTokenizer, _ text: [UInt32]) throws -> Int {
        var steps = RegexSteps()
        _ = try pre.apply([Piece(text: text, atStart: true)], steps: &steps)
        return steps.total
    }

    @Test(arguments: ["gpt2", "llama3", "deepseek", "qwen2"]) func linearOnDegenerateText(name: String) throws {
        let pre = try Self.preTokenizer(name)
        for kind in Self.kinds {
            let small = try Self.steps(pre, Self.input(kind, 100_000))
            let large = try Self.steps(pre, Self.input(kind, 1_000_000))
            #expect(large <= 12 * small, "\(name) on \(kind): \(small) steps on 100K, \(large) on 1M")
            // Steps per scalar stay far below the budget's (RegexBudget.perScalar).
            #expect(large <= 100 * 1_000_000, "\(name) on \(kind): \(large) steps on 1M")
        }
    }
}
