/// What a `Split` pre-tokenizer or a `Replace` normalizer/decoder looks for: a literal string
/// (`{"String": ...}`) or an Oniguruma regex (`{"Regex": ...}`).
enum SplitPattern: Sendable {
    case string([UInt32])
    case regex(TokenRegex)

    /// The pieces of `text`, each flagged when it is a match (tokenizers' `find_matches`).
    func pieces(_ text: [UInt32]) -> [(Range<Int>, Bool)] {
        if text.isEmpty { return [(0..<0, false)] }
        let found: [Range<Int>]
        switch self {
        case .regex(let r): found = r.matches(in: text)
        case .string(let lit):
            if lit.isEmpty { return [(0..<text.count, false)] }
            var out: [Range<Int>] = []
            var i = 0
            while i + lit.count <= text.count {
                if text[i] == lit[0] && Array(text[i..<(i + lit.count)]) == lit {
                    out.append(i..<(i + lit.count))
                    i += lit.count
                } else {
                    i += 1
                }
            }
            found = out
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

    func replacingMatches(in text: [UInt32], with content: [UInt32]) -> [UInt32] {
        var out: [UInt32] = []
        for (r, isMatch) in pieces(text) {
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
