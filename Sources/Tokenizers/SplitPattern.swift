/// What a `Split` pre-tokenizer or a `Replace` normalizer/decoder looks for: a literal string
/// (`{"String": ...}`) or an Oniguruma regex (`{"Regex": ...}`).
enum SplitPattern: Sendable {
    case string([UInt32])
    case regex(TokenRegex)

    /// The pieces of `text`, each flagged when it is a match (tokenizers' `find_matches`).
    func pieces(_ text: [UInt32]) throws(RegexBudgetError) -> [(Range<Int>, Bool)] {
        var steps = RegexSteps()
        return try pieces(text, steps: &steps)
    }

    /// `pieces(_:)`, adding the regex machine's steps to `steps`.
    func pieces(_ text: [UInt32], steps: inout RegexSteps) throws(RegexBudgetError) -> [(Range<Int>, Bool)] {
        if text.isEmpty { return [(0..<0, false)] }
        let found: [Range<Int>]
        switch self {
        case .regex(let r): found = try r.matches(in: text, steps: &steps)
        case .string(let lit):
            if lit.isEmpty { return [(0..<text.count, false)] }
            found = Self.occurrences(of: lit, in: text)
        }
        var out: [(Range<Int>, Bool)] = []
        var prev = 0
        for m in found {
            if prev != m.lowerBound { out.append((prev..<m.lowerBound, false)) }
            out.append((m, true))
            prev = m.upperBound
        }
        if prev != text.count { out.append((prev..<text.count, false)) }
        return out
    }

    /// The leftmost non-overlapping occurrences of `lit` (Knuth-Morris-Pratt: linear in the text
    /// however the literal repeats itself, as a file's `{"String": "aaaa"}` may).
    static func occurrences(of lit: [UInt32], in text: [UInt32]) -> [Range<Int>] {
        // fallback[k]: the length of the longest proper border of lit[0..<k+1].
        var fallback = [Int](repeating: 0, count: lit.count)
        var k = 0
        for i in 1..<max(lit.count, 1) {
            while k > 0 && lit[i] != lit[k] { k = fallback[k - 1] }
            if lit[i] == lit[k] { k += 1 }
            fallback[i] = k
        }
        var out: [Range<Int>] = []
        var matched = 0
        for (i, c) in text.enumerated() {
            while matched > 0 && c != lit[matched] { matched = fallback[matched - 1] }
            if c == lit[matched] { matched += 1 }
            if matched == lit.count {
                out.append((i + 1 - lit.count)..<(i + 1))
                matched = 0   // non-overlapping: the next occurrence starts after this one
            }
        }
        return out
    }

    /// Pieces for a per-character predicate: every matching character is a match of its own.
    static func pieces(_ text: [UInt32], where predicate: (UInt32) -> Bool) -> [(Range<Int>, Bool)] {
        if text.isEmpty { return [(0..<0, false)] }
        var out: [(Range<Int>, Bool)] = []
        var last = 0
        for (i, c) in text.enumerated() where predicate(c) {
            if last < i { out.append((last..<i, false)) }
            out.append((i..<(i + 1), true))
            last = i + 1
        }
        if text.count > last { out.append((last..<text.count, false)) }
        return out
    }

    func replacingMatches(in text: [UInt32], with content: [UInt32]) throws(RegexBudgetError) -> [UInt32] {
        var out: [UInt32] = []
        for (r, isMatch) in try pieces(text) {
            if isMatch { out += content } else { out += text[r] }
        }
        return out
    }
}

/// How a split treats what it found (tokenizers' `SplitDelimiterBehavior`).
enum SplitBehavior: String, Sendable {
    case removed = "Removed", isolated = "Isolated", mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext", contiguous = "Contiguous"

    /// The ranges to keep, given the flagged pieces.
    func apply(_ pieces: [(Range<Int>, Bool)]) -> [Range<Int>] {
        switch self {
        case .isolated: return pieces.map(\.0)
        case .removed: return pieces.filter { !$0.1 }.map(\.0)
        case .contiguous:
            var acc: [Range<Int>] = []
            var previous = false
            for (r, m) in pieces {
                if m == previous, let last = acc.last { acc[acc.count - 1] = last.lowerBound..<r.upperBound } else { acc.append(r) }
                previous = m
            }
            return acc
        case .mergedWithPrevious:
            var acc: [Range<Int>] = []
            var previous = false
            for (r, m) in pieces {
                if m && !previous, let last = acc.last { acc[acc.count - 1] = last.lowerBound..<r.upperBound } else { acc.append(r) }
                previous = m
            }
            return acc
        case .mergedWithNext:
            var acc: [Range<Int>] = []
            var previous = false
            for (r, m) in pieces.reversed() {
                if m && !previous, let last = acc.last { acc[acc.count - 1] = r.lowerBound..<last.upperBound } else { acc.append(r) }
                previous = m
            }
            return acc.reversed()
        }
    }
}
