/// How much work the regex machine may do for one search (one `matches(in:)` or `firstMatch(in:)`
/// call on one piece of text), like Oniguruma's retry limit: a pattern such as `(a+)+$`
/// backtracks exponentially, and tokenizer.json files are downloaded input.
///
/// A step is one instruction of the program, one scalar a repetition scans, or one retry after
/// a failure, so the count bounds the running time. The limit grows with the text: the
/// published patterns (GPT-2, Llama 3, Qwen2, DeepSeek) take a small constant number of steps
/// per scalar on any text, degenerate runs of one character included (RegexLinearityTests),
/// and a long piece must not fail for being long; a pattern that needs more than `perScalar`
/// steps per scalar on top of `base` is backtracking, not matching.
package struct RegexBudget: Sendable {
    /// Steps any search may take, however short its text.
    package static let base = 1_000_000
    /// Further steps per scalar of the text searched.
    package static let perScalar = 1_000

    /// The step limit for a search over `length` scalars (saturating: a limit, never a trap).
    package static func limit(forLength length: Int) -> Int {
        let cap = (Int.max - base) / perScalar
        return base + min(length, cap) * perScalar
    }

    /// Backtrack entries a search may hold at once (16 bytes each): the published patterns
    /// hold a few per match; this bounds memory the way `limit` bounds time.
    package static func stackLimit(forLength length: Int) -> Int {
        100_000 + min(length, Int.max / 16) * 8
    }
}

/// A search that went past its `RegexBudget`: the pattern, where it came from (a JSON path in
/// tokenizer.json, when it came from one) and the length of the text it gave up on.
package struct RegexBudgetError: Error, CustomStringConvertible, Sendable {
    /// What ran out: steps (time), backtrack entries (memory), or positions (the machine
    /// keeps them in 32 bits).
    package enum Resource: Sendable { case steps, stack, length }

    package let pattern: String
    package let origin: String?
    package let resource: Resource
    package let limit: Int
    package let textLength: Int

    package var description: String {
        let at = origin.map { "\($0): " } ?? ""
        let what = switch resource {
        case .steps: "took more than \(limit) regex steps"
        case .stack: "held more than \(limit) backtrack entries"
        case .length: "cannot search more than \(limit) characters at once"
        }
        return "\(at)pattern \(RegexError.shown(pattern)) \(what) on a text of \(textLength) characters "
            + "(catastrophic backtracking: the step budget is \(RegexBudget.base) + \(RegexBudget.perScalar) per character)"
    }
}

/// The steps searches took, summed over the searches that share it (a whole encode, a test's
/// measurement); each search still has its own limit.
package struct RegexSteps: Sendable {
    package var total = 0
    package init() {}
}
