/// Tokens back to text (tokenizer.json `decoder`): each step maps the list of token strings to
/// a new list; the result is their concatenation.
indirect enum Decoder: Sendable {
    case byteLevel
    case metaspace(replacement: UInt32, prependScheme: PreTokenizer.PrependScheme)
    case replace(SplitPattern, content: [UInt32])
    case byteFallback
    case fuse
    case strip(content: UInt32, start: Int, stop: Int)
    case bpeSuffix(String)
    case sequence([Decoder])

    func apply(_ tokens: [String]) throws(RegexBudgetError) -> [String] {
        switch self {
        case .byteLevel: return [ByteLevel.decode(tokens)]
        case .metaspace(let replacement, let scheme):
            return tokens.enumerated().map { i, t in
                var out = String.UnicodeScalarView()
                for s in t.unicodeScalars {
                    if s.value == replacement {
                        if !(i == 0 && scheme != .never) { out.append(" ") }
                    } else {
                        out.append(s)
                    }
                }
                return String(out)
            }
        case .replace(let pattern, let content):
            return try tokens.map { (t) throws(RegexBudgetError) in try pattern.replacingMatches(in: [UInt32](scalarsOf: t), with: content).string }
        case .byteFallback:
            var out: [String] = []
            var pending: [UInt8] = []
            func flush() {
                guard !pending.isEmpty else { return }
                if let s = String(validating: pending, as: UTF8.self) { out.append(s) } else { out += Array(repeating: "\u{FFFD}", count: pending.count) }
                pending.removeAll()
            }
            for t in tokens {
                let u = Array(t.utf8)
                if u.count == 6, t.hasPrefix("<0x"), t.hasSuffix(">"), let b = UInt8(String(t.dropFirst(3).prefix(2)), radix: 16) {
                    pending.append(b)
                } else {
                    flush()
                    out.append(t)
                }
            }
            flush()
            return out
        case .fuse: return [tokens.joined()]
        case .strip(let content, let start, let stop):
            return tokens.map { t in
                let chars = Array(t.unicodeScalars)
                var lo = 0
                for i in 0..<min(start, chars.count) { if chars[i].value == content { lo = i + 1 } else { break } }
                var hi = chars.count
                for i in 0..<min(stop, chars.count) {
                    let k = chars.count - i - 1
                    if chars[k].value == content { hi = k } else { break }
                }
                var v = String.UnicodeScalarView()
                if lo < hi { v.append(contentsOf: chars[lo..<hi]) }
                return String(v)
            }
        case .bpeSuffix(let suffix):
            return tokens.enumerated().map { i, t in t.replacingOccurrences(of: suffix, with: i == tokens.count - 1 ? "" : " ") }
        case .sequence(let steps):
            var t = tokens
            for s in steps { t = try s.apply(t) }
            return t
        }
    }
}
