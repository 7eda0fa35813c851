/// A token matched in the text before the model sees it (tokenizer.json `added_tokens`).
public struct AddedToken: Sendable {
    public let content: String
    public let id: Int
    public let special: Bool
    public var singleWord = false
    public var lstrip = false
    public var rstrip = false
    /// Matched against the normalized text (true) or the raw text (false).
    public var normalized = false

    public init(content: String, id: Int, special: Bool, singleWord: Bool = false, lstrip: Bool = false, rstrip: Bool = false,
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
    struct Entry: Sendable { let scalars: [UInt32]; let token: AddedToken }
    /// Candidates by first scalar, longest first.
    let byFirst: [UInt32: [Entry]]

    init(_ tokens: [AddedToken], normalizer: Normalizer?) throws(RegexBudgetError) {
        var d: [UInt32: [Entry]] = [:]
        for t in tokens {
            var s = [UInt32](scalarsOf: t.content)
            if t.normalized, let n = normalizer { s = try n.apply(s) }
            guard let f = s.first else { continue }
            d[f, default: []].append(Entry(scalars: s, token: t))
        }
        for k in d.keys { d[k]!.sort { $0.scalars.count > $1.scalars.count } }
        byFirst = d
    }

    var isEmpty: Bool { byFirst.isEmpty }

    enum Segment { case text(Range<Int>), token(Int) }

    func split(_ text: [UInt32]) -> [Segment] {
        if byFirst.isEmpty || text.isEmpty { return [.text(0..<text.count)] }
        var out: [Segment] = []
        var startOffset = 0
        var i = 0
        let n = text.count
        while i < n {
            guard let cands = byFirst[text[i]],
                  let e = cands.first(where: { $0.scalars.count <= n - i && text[i..<(i + $0.scalars.count)].elementsEqual($0.scalars) }) else {
                i += 1
                continue
            }
            var start = i, stop = i + e.scalars.count
            i = stop
            let t = e.token
            if t.singleWord {
                let startOK = start == 0 || !CharacterClass.isRustWord(text[start - 1])
                let stopOK = stop == n || !CharacterClass.isRustWord(text[stop])
                if !startOK || !stopOK { continue }
            }
            if t.lstrip {
                var s = start
                while s > 0 && CharacterClass.isWhitespace(text[s - 1]) { s -= 1 }
                start = max(s, startOffset)
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
