/// A piece of text on its way to the model, and whether it begins at offset 0 of the original
/// text (Metaspace's `prepend_scheme: first` adds its marker only there, as tokenizers decides
/// by the piece's original offsets: a piece after an added token, or whose leading spaces a
/// normalizer removed, does not).
struct Piece {
    var text: [UInt32]
    var atStart: Bool
}

/// The second step: splits normalized text into the pieces the model encodes one by one
/// (tokenizer.json `pre_tokenizer`).
indirect enum PreTokenizer: Sendable {
    enum PrependScheme: String, Sendable { case always, first, never }

    case sequence([PreTokenizer])
    case split(SplitPattern, SplitBehavior, invert: Bool)
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case digits(individual: Bool)
    case metaspace(replacement: UInt32, prependScheme: PrependScheme, split: Bool)
    case whitespace
    case whitespaceSplit
    case punctuation(SplitBehavior)
    case bert

    func apply(_ pieces: [Piece]) throws(RegexBudgetError) -> [Piece] {
        var steps = RegexSteps()
        return try apply(pieces, steps: &steps)
    }

    /// `apply(_:)`, adding the regex machine's steps to `steps`.
    func apply(_ pieces: [Piece], steps: inout RegexSteps) throws(RegexBudgetError) -> [Piece] {
        switch self {
        case .sequence(let stages):
            var p = pieces
            for s in stages { p = try s.apply(p, steps: &steps) }
            return p
        case .split(let pattern, let behavior, let invert):
            return try split(pieces, behavior) { (t) throws(RegexBudgetError) in
                let found = try pattern.pieces(t, steps: &steps)
                return invert ? found.map { ($0.0, !$0.1) } : found
            }
        case .byteLevel(let addPrefixSpace, let useRegex):
            var out: [Piece] = []
            for var p in pieces {
                if addPrefixSpace && p.text.first != 32 { p.text.insert(32, at: 0) }
                let parts = useRegex
                    ? try split([p], .isolated) { (t) throws(RegexBudgetError) in try SplitPattern.regex(ByteLevel.gpt2Regex).pieces(t, steps: &steps) }
                    : [p]
                for var q in parts {
                    q.text = ByteLevel.encode(q.text)
                    out.append(q)
                }
            }
            return out
        case .digits(let individual):
            return try split(pieces, individual ? .isolated : .contiguous) { SplitPattern.pieces($0, where: PreTokenizer.isNumeric) }
        case .metaspace(let replacement, let scheme, let doSplit):
            var out: [Piece] = []
            for var p in pieces {
                p.text = p.text.map { $0 == 32 ? replacement : $0 }
                if p.text.first != replacement && (scheme == .always || (scheme == .first && p.atStart)) {
                    p.text.insert(replacement, at: 0)
                }
                out += doSplit ? try split([p], .mergedWithNext) { SplitPattern.pieces($0) { $0 == replacement } } : [p]
            }
            return out
        case .whitespace:
            return try split(pieces, .removed) { (t) throws(RegexBudgetError) in
                try SplitPattern.regex(PreTokenizer.wordsOrSymbols).pieces(t, steps: &steps).map { ($0.0, !$0.1) }
            }
        case .whitespaceSplit:
            return try split(pieces, .removed) { SplitPattern.pieces($0, where: CharacterClass.isWhitespace) }
        case .punctuation(let behavior):
            return try split(pieces, behavior) { SplitPattern.pieces($0, where: PreTokenizer.isPunctuation) }
        case .bert:
            let ws = try split(pieces, .removed) { SplitPattern.pieces($0, where: CharacterClass.isWhitespace) }
            return try split(ws, .isolated) { SplitPattern.pieces($0, where: PreTokenizer.isPunctuation) }
        }
    }

    /// Splits every piece; empty results are dropped, as tokenizers drops them.
    func split(_ pieces: [Piece], _ behavior: SplitBehavior,
               _ find: ([UInt32]) throws(RegexBudgetError) -> [(Range<Int>, Bool)]) throws(RegexBudgetError) -> [Piece] {
        var out: [Piece] = []
        for p in pieces {
            for r in behavior.apply(try find(p.text)) where !r.isEmpty {
                out.append(Piece(text: Array(p.text[r]), atStart: p.atStart && r.lowerBound == 0))
            }
        }
        return out
    }

    /// Whitespace's pattern, which tokenizers compiles with Rust's regex crate.
    static let wordsOrSymbols: TokenRegex = try! TokenRegex(#"\w+|[^\w\s]+"#, rustWord: true, origin: "the Whitespace pre-tokenizer's pattern")

    /// Rust's `char::is_numeric`: Nd, Nl and No.
    static func isNumeric(_ c: UInt32) -> Bool {
        if c < 128 { return c >= 48 && c <= 57 }
        return CharacterClass.categoryBit(c) & GeneralCategoryBits.number != 0
    }

    /// ASCII punctuation (which includes symbols like `$` and `+`) or a Unicode P* character.
    static func isPunctuation(_ c: UInt32) -> Bool {
        if c < 128 { return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126) }
        return CharacterClass.categoryBit(c) & GeneralCategoryBits.punctuation != 0
    }
}
