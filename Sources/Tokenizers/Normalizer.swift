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

    func apply(_ text: [UInt32]) -> [UInt32] {
        switch self {
        case .sequence(let steps):
            var t = text
            for s in steps { t = s.apply(t) }
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
            return pattern.replacingMatches(in: text, with: content)
        case .prepend(let p):
            return text.isEmpty ? text : p + text
        case .byteLevel:
            return ByteLevel.encode(text)
        }
    }
}
