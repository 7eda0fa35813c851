import Foundation

/// The first step of encoding: rewrites the text before it is split (tokenizer.json `normalizer`).
indirect enum Normalizer: Sendable {
    case sequence([Normalizer])
    case nfc, nfd, nfkc, nfkd
    case lowercase
    case strip(left: Bool, right: Bool)
    case stripAccents
    case replace(SplitPattern, content: [UInt32])
    case prepend([UInt32])
    case byteLevel

    func apply(_ text: [UInt32]) throws(RegexBudgetError) -> [UInt32] {
        switch self {
        case .sequence(let steps):
            var t = text
            for s in steps { t = try s.apply(t) }
            return t
        case .nfc: return [UInt32](scalarsOf: (text.string as NSString).precomposedStringWithCanonicalMapping)
        case .nfd: return [UInt32](scalarsOf: (text.string as NSString).decomposedStringWithCanonicalMapping)
        case .nfkc: return [UInt32](scalarsOf: (text.string as NSString).precomposedStringWithCompatibilityMapping)
        case .nfkd: return [UInt32](scalarsOf: (text.string as NSString).decomposedStringWithCompatibilityMapping)
        case .lowercase:
            var out: [UInt32] = []
            out.reserveCapacity(text.count)
            for c in text {
                if c < 128 { out.append(c >= 65 && c <= 90 ? c + 32 : c); continue }
                guard let s = Unicode.Scalar(c) else { continue }
                out += s.properties.lowercaseMapping.unicodeScalars.map(\.value)
            }
            return out
        case .strip(let left, let right):
            var lo = 0, hi = text.count
            if left { while lo < hi && CharacterClass.isWhitespace(text[lo]) { lo += 1 } }
            if right { while hi > lo && CharacterClass.isWhitespace(text[hi - 1]) { hi -= 1 } }
            return Array(text[lo..<hi])
        case .stripAccents:
            return text.filter { CharacterClass.categoryBit($0) & (1 << 5) == 0 }   // drop Mn
        case .replace(let pattern, let content):
            return try pattern.replacingMatches(in: text, with: content)
        case .prepend(let p):
            return text.isEmpty ? text : p + text
        case .byteLevel:
            return ByteLevel.encode(text)
        }
    }
}

/// Normalized text, and whether its first character still comes from the first character of
/// the text before normalizing. tokenizers' NormalizedString aligns every character with its
/// original offsets; of those, the pipeline needs only this one (Metaspace's `prepend_scheme:
/// first` looks at whether a piece starts at original offset 0).
struct NormalizedText {
    var text: [UInt32]
    var startsAtOrigin: Bool
}

extension Normalizer {
    func normalize(_ text: [UInt32]) throws(RegexBudgetError) -> NormalizedText {
        if case .sequence(let steps) = self {
            var n = NormalizedText(text: text, startsAtOrigin: true)
            for s in steps {
                let next = try s.normalize(n.text)
                n = NormalizedText(text: next.text, startsAtOrigin: n.startsAtOrigin && next.startsAtOrigin)
            }
            return n
        }
        return NormalizedText(text: try apply(text), startsAtOrigin: try !dropsFirst(text))
    }

    /// Whether this (non-sequence) step removes the first character of `text`, so that the
    /// result starts further on in the original. Only removing does: a replaced or prepended
    /// first character is aligned with the original's first.
    func dropsFirst(_ text: [UInt32]) throws(RegexBudgetError) -> Bool {
        guard let first = text.first else { return false }
        switch self {
        case .strip(let left, _): return left && CharacterClass.isWhitespace(first)
        case .stripAccents: return CharacterClass.categoryBit(first) & (1 << 5) != 0
        case .replace(let pattern, let content):
            guard content.isEmpty, let (r, isMatch) = try pattern.pieces(text).first else { return false }
            return isMatch && r.lowerBound == 0 && !r.isEmpty
        default: return false
        }
    }
}
