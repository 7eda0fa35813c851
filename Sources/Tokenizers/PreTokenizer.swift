/// A piece of text on its way to the model, and whether it begins the whole input (Metaspace's
/// `prepend_scheme: first` adds its marker only there).
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

    func apply(_ pieces: [Piece]) -> [Piece] {
        switch self {
        case .sequence(let steps):
            var p = pieces
            for s in steps { p = s.apply(p) }
            return p
        case .split(let pattern, let behavior, let invert):
            return split(pieces, behavior) { t in
                let found = pattern.pieces(t)
                return invert ? found.map { ($0.0, !$0.1) } : found
            }
        case .byteLevel(let addPrefixSpace, let useRegex):
            var out: [Piece] = []
            for var p in pieces {
                if addPrefixSpace && p.text.first != 32 { p.text.insert(32, at: 0) }
                let parts = useRegex ? split([p], .isolated) { SplitPattern.regex(ByteLevel.gpt2Regex).pieces($0) } : [p]
                for var q in parts {
                    q.text = ByteLevel.encode(q.text)
                    out.append(q)
                }
            }
            return out
        case .digits(let individual):
            return split(pieces, individual ? .isolated : .contiguous) { SplitPattern.pieces($0, where: PreTokenizer.isNumeric) }
        case .metaspace(let replacement, let scheme, let doSplit):
            var out: [Piece] = []
            for var p in pieces {
                p.text = p.text.map { $0 == 32 ? replacement : $0 }
                if p.text.first != replacement && (scheme == .always || (scheme == .first && p.atStart)) {
                    p.text.insert(replacement, at: 0)
                }
                out += doSplit ? split([p], .mergedWithNext) { SplitPattern.pieces($0) { $0 == replacement } } : [p]
            }
            return out
        case .whitespace:
            return split(pieces, .removed) { t in
                SplitPattern.regex(PreTokenizer.wordsOrSymbols).pieces(t).map { ($0.0, !$0.1) }
            }
        case .whitespaceSplit:
            return split(pieces, .removed) { SplitPattern.pieces($0, where: CharacterClass.isWhitespace) }
        case .punctuation(let behavior):
            return split(pieces, behavior) { SplitPattern.pieces($0, where: PreTokenizer.isPunctuation) }
        case .bert:
            let ws = split(pieces, .removed) { SplitPattern.pieces($0, where: CharacterClass.isWhitespace) }
            return split(ws, .isolated) { SplitPattern.pieces($0, where: PreTokenizer.isPunctuation) }
        }
    }

    /// Splits every piece; empty results are dropped, as tokenizers drops them.
    func split(_ pieces: [Piece], _ behavior: SplitBehavior, _ find: ([UInt32]) -> [(Range<Int>, Bool)]) -> [Piece] {
        var out: [Piece] = []
        for p in pieces {
            for r in behavior.apply(find(p.text)) where !r.isEmpty {
                out.append(Piece(text: Array(p.text[r]), atStart: p.atStart && r.lowerBound == 0))
            }
        }
        return out
    }

    /// Whitespace's pattern, which tokenizers compiles with Rust's regex crate.
    static let wordsOrSymbols: TokenRegex = try! TokenRegex(#"\w+|[^\w\s]+"#, rustWord: true)

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
