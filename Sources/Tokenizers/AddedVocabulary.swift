/// A token matched in the text before the model sees it (tokenizer.json `added_tokens`).
package struct AddedToken: Sendable {
    package let content: String
    package let id: Int
    package let special: Bool
    package var singleWord = false
    package var lstrip = false
    package var rstrip = false
    /// Matched against the normalized text (true) or the raw text (false).
    package var normalized = false

    package init(content: String, id: Int, special: Bool, singleWord: Bool = false, lstrip: Bool = false, rstrip: Bool = false,
                normalized: Bool = false) {
        self.content = content
        self.id = id
        self.special = special
        self.singleWord = singleWord
        self.lstrip = lstrip
        self.rstrip = rstrip
        self.normalized = normalized
    }
}

/// Finds added tokens in text: leftmost, then longest, non-overlapping, as tokenizers'
/// Aho-Corasick matcher does, with `single_word`, `lstrip` and `rstrip` applied to each match.
struct AddedTokenMatcher: Sendable {
    /// The tokens' scalars as a trie: node 0 is the root, an edge is keyed by
    /// `node << 32 | scalar`. Finding the longest token at a position walks at most the longest
    /// token's length, and a position no token starts at costs one lookup, however many tokens
    /// share a first character.
    let edges: [UInt64: Int32]
    /// The token that ends at each node (index into `tokens`), or -1.
    let ending: [Int32]
    let tokens: [AddedToken]

    init(_ tokens: [AddedToken], normalizer: Normalizer?) throws(RegexBudgetError) {
        var edges: [UInt64: Int32] = [:]
        var ending: [Int32] = [-1]
        for (i, t) in tokens.enumerated() {
            var s = [UInt32](scalarsOf: t.content)
            if t.normalized, let n = normalizer { s = try n.apply(s) }
            guard !s.isEmpty else { continue }
            var node: Int32 = 0
            for c in s {
                let key = UInt64(UInt32(node)) << 32 | UInt64(c)
                if let next = edges[key] { node = next; continue }
                edges[key] = Int32(ending.count)
                node = Int32(ending.count)
                ending.append(-1)
            }
            // Two tokens with the same text: the first in the file is the one matched.
            if ending[Int(node)] < 0 { ending[Int(node)] = Int32(i) }
        }
        self.edges = edges
        self.ending = ending
        self.tokens = tokens
    }

    var isEmpty: Bool { edges.isEmpty }

    /// The longest token starting at `i`: its end and the token, or nil.
    func longest(in text: [UInt32], at i: Int) -> (end: Int, token: AddedToken)? {
        var node: Int32 = 0
        var found: (Int, AddedToken)? = nil
        var j = i
        while j < text.count, let next = edges[UInt64(UInt32(node)) << 32 | UInt64(text[j])] {
            node = next
            j += 1
            if ending[Int(node)] >= 0 { found = (j, tokens[Int(ending[Int(node)])]) }
        }
        return found
    }

    enum Segment { case text(Range<Int>), token(Int) }

    func split(_ text: [UInt32]) -> [Segment] {
        if edges.isEmpty || text.isEmpty { return [.text(0..<text.count)] }
        var out: [Segment] = []
        var startOffset = 0
        var i = 0
        let n = text.count
        while i < n {
            guard let (end, t) = longest(in: text, at: i) else {
                i += 1
                continue
            }
            var start = i, stop = end
            i = stop
            if t.singleWord {
                let startOK = start == 0 || !CharacterClass.isRustWord(text[start - 1])
                let stopOK = stop == n || !CharacterClass.isRustWord(text[stop])
                if !startOK || !stopOK { continue }
            }
            if t.lstrip {
                // Not past the previous match: it owns those spaces (and rescanning them would be quadratic).
                while start > startOffset && CharacterClass.isWhitespace(text[start - 1]) { start -= 1 }
            }
            if t.rstrip {
                while stop < n && CharacterClass.isWhitespace(text[stop]) { stop += 1 }
                i = stop
            }
            if startOffset < start { out.append(.text(startOffset..<start)) }
            out.append(.token(t.id))
            startOffset = stop
        }
        if startOffset < n { out.append(.text(startOffset..<n)) }
        return out
    }
}
