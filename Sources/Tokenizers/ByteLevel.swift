/// GPT-2's byte-level alphabet: every byte is shown as a printable character, so a vocabulary
/// of strings covers all byte sequences. Bytes that are printable stand for themselves; the
/// rest are shifted to U+0100 and up.
enum ByteLevel {
    static let byteToScalar: [UInt32] = {
        var bs = Array(33...126) + Array(161...172) + Array(174...255)
        var cs = bs
        var n = 0
        for b in 0..<256 where !bs.contains(b) {
            bs.append(b)
            cs.append(256 + n)
            n += 1
        }
        var table = [UInt32](repeating: 0, count: 256)
        for (b, c) in zip(bs, cs) { table[b] = UInt32(c) }
        return table
    }()

    static let scalarToByte: [UInt32: UInt8] = {
        var d: [UInt32: UInt8] = [:]
        for (b, c) in byteToScalar.enumerated() { d[c] = UInt8(b) }
        return d
    }()

    /// The pre-tokenizer's own split (GPT-2's pattern), used when `use_regex` is true.
    static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let gpt2Regex: TokenRegex = try! TokenRegex(gpt2Pattern, origin: "the ByteLevel pre-tokenizer's GPT-2 pattern")

    /// The UTF-8 bytes of `scalars`, each as its byte-level character.
    static func encode(_ scalars: [UInt32]) -> [UInt32] {
        var out: [UInt32] = []
        out.reserveCapacity(scalars.count)
        for c in scalars {
            for b in utf8(c) { out.append(byteToScalar[Int(b)]) }
        }
        return out
    }

    static func utf8(_ c: UInt32) -> [UInt8] {
        switch c {
        case 0..<0x80: return [UInt8(c)]
        case 0x80..<0x800: return [UInt8(0xC0 | (c >> 6)), UInt8(0x80 | (c & 0x3F))]
        case 0x800..<0x10000: return [UInt8(0xE0 | (c >> 12)), UInt8(0x80 | ((c >> 6) & 0x3F)), UInt8(0x80 | (c & 0x3F))]
        default:
            return [UInt8(0xF0 | (c >> 18)), UInt8(0x80 | ((c >> 12) & 0x3F)), UInt8(0x80 | ((c >> 6) & 0x3F)), UInt8(0x80 | (c & 0x3F))]
        }
    }

    /// The decoder: byte-level characters back to bytes; a token with any other character keeps
    /// its own UTF-8 bytes (so special tokens come out as written); invalid UTF-8 becomes U+FFFD.
    static func decode(_ tokens: [String]) -> String {
        var bytes: [UInt8] = []
        for t in tokens {
            var mine: [UInt8] = []
            var ok = true
            for s in t.unicodeScalars {
                guard let b = scalarToByte[s.value] else { ok = false; break }
                mine.append(b)
            }
            bytes += ok ? mine : Array(t.utf8)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension Array where Element == UInt32 {
    /// Text as the scalar array the tokenizer pipeline works on.
    init(scalarsOf s: String) { self = s.unicodeScalars.map(\.value) }
    var string: String {
        var s = String.UnicodeScalarView()
        for c in self { if let u = Unicode.Scalar(c) { s.append(u) } }
        return String(s)
    }
}
