import Foundation

/// A tokenizer error: names the file (or "text") and what was expected.
public struct TokenizerError: Error, CustomStringConvertible {
    public let source: String
    public let message: String
    public var description: String { "\(source): \(message)" }
}

/// Byte-level BPE as Hugging Face `tokenizers` defines it in `tokenizer.json`: added (special)
/// tokens matched first, a pre-tokenizer Sequence of regex `Split`s and `ByteLevel` (bytes
/// mapped to printable characters), then merges applied lowest rank first.
public final class BPETokenizer: @unchecked Sendable {
    public struct AddedToken: Sendable {
        public let content: String
        public let id: Int
        public let special: Bool
    }

    enum Behavior: String { case isolated = "Isolated", removed = "Removed" }

    public let vocab: [String: Int]
    let tokens: [Int: String]
    /// Merge ranks keyed by "left right" (a space never occurs inside a byte-level symbol).
    let ranks: [String: Int]
    let merges: [(String, String)]
    public let added: [AddedToken]
    let splits: [(pattern: String, regex: NSRegularExpression, behavior: Behavior)]
    let addPrefixSpace: Bool
    private var cache: [String: [Int]] = [:]
    private let lock = NSLock()

    static let byteToChar: [Character] = {
        var bs = Array(33...126) + Array(161...172) + Array(174...255)
        var cs = bs
        var n = 0
        for b in 0..<256 where !bs.contains(b) {
            bs.append(b)
            cs.append(256 + n)
            n += 1
        }
        var table = [Character](repeating: " ", count: 256)
        for (b, c) in zip(bs, cs) { table[b] = Character(Unicode.Scalar(UInt32(c))!) }
        return table
    }()
    static let charToByte: [Character: UInt8] = {
        var d: [Character: UInt8] = [:]
        for (b, c) in byteToChar.enumerated() { d[c] = UInt8(b) }
        return d
    }()

    init(vocab: [String: Int], merges: [(String, String)], added: [AddedToken], splits: [(String, Behavior)], addPrefixSpace: Bool,
         source: String) throws {
        self.vocab = vocab
        var t: [Int: String] = [:]
        for (k, v) in vocab { t[v] = k }
        for a in added { t[a.id] = a.content }
        tokens = t
        self.merges = merges
        var r: [String: Int] = [:]
        for (i, m) in merges.enumerated() where r["\(m.0) \(m.1)"] == nil { r["\(m.0) \(m.1)"] = i }
        ranks = r
        self.added = added.sorted { $0.content.count > $1.content.count }
        self.splits = try splits.map { p, b in
            do {
                return (p, try NSRegularExpression(pattern: p, options: [.anchorsMatchLines]), b)
            } catch {
                throw TokenizerError(source: source, message: "pre_tokenizer pattern \(p) is not a valid regular expression")
            }
        }
        self.addPrefixSpace = addPrefixSpace
    }

    public var vocabularySize: Int { (tokens.keys.max() ?? -1) + 1 }

    public func id(of token: String) -> Int? { vocab[token] ?? added.first { $0.content == token }?.id }

    // MARK: encoding

    public func encode(_ text: String) -> [Int] {
        var out: [Int] = []
        for (segment, special) in splitAdded(text) {
            if let special { out.append(special); continue }
            for piece in preTokenize(segment) { out += bpe(piece) }
        }
        return out
    }

    /// Text split at added tokens (leftmost, then longest match).
    func splitAdded(_ text: String) -> [(String, Int?)] {
        guard !added.isEmpty else { return [(text, nil)] }
        var result: [(String, Int?)] = []
        var rest = Substring(text)
        while !rest.isEmpty {
            var best: (Range<Substring.Index>, AddedToken)? = nil
            for a in added {
                if let r = rest.range(of: a.content), best == nil || r.lowerBound < best!.0.lowerBound {
                    best = (r, a)
                }
            }
            guard let (r, a) = best else { break }
            if r.lowerBound > rest.startIndex { result.append((String(rest[rest.startIndex..<r.lowerBound]), nil)) }
            result.append((a.content, a.id))
            rest = rest[r.upperBound...]
        }
        if !rest.isEmpty { result.append((String(rest), nil)) }
        return result
    }

    func preTokenize(_ text: String) -> [String] {
        var pieces = [addPrefixSpace && !text.hasPrefix(" ") ? " " + text : text]
        for (_, regex, behavior) in splits {
            var next: [String] = []
            for p in pieces {
                let ns = p as NSString
                var last = 0
                for m in regex.matches(in: p, range: NSRange(location: 0, length: ns.length)) where m.range.length > 0 {
                    if m.range.location > last { next.append(ns.substring(with: NSRange(location: last, length: m.range.location - last))) }
                    if behavior == .isolated { next.append(ns.substring(with: m.range)) }
                    last = m.range.location + m.range.length
                }
                if last < ns.length { next.append(ns.substring(from: last)) }
            }
            pieces = next
        }
        return pieces
    }

    /// BPE over one pre-tokenized piece: its bytes as byte-level symbols, merged pair by pair
    /// in rank order (the leftmost occurrence first).
    func bpe(_ piece: String) -> [Int] {
        lock.lock()
        if let hit = cache[piece] { lock.unlock(); return hit }
        lock.unlock()
        var symbols = piece.utf8.map { String(BPETokenizer.byteToChar[Int($0)]) }
        while symbols.count > 1 {
            var bestRank = Int.max, bestAt = -1
            for i in 0..<(symbols.count - 1) {
                if let r = ranks["\(symbols[i]) \(symbols[i + 1])"], r < bestRank { bestRank = r; bestAt = i }
            }
            if bestAt < 0 { break }
            let (l, r) = (symbols[bestAt], symbols[bestAt + 1])
            var merged: [String] = []
            var i = 0
            while i < symbols.count {
                if i < symbols.count - 1 && symbols[i] == l && symbols[i + 1] == r {
                    merged.append(l + r)
                    i += 2
                } else {
                    merged.append(symbols[i])
                    i += 1
                }
            }
            symbols = merged
        }
        // Symbols missing from the vocabulary fall back to their bytes (always in a byte-level vocab).
        var ids: [Int] = []
        for s in symbols {
            if let id = vocab[s] { ids.append(id) } else { for ch in s { if let id = vocab[String(ch)] { ids.append(id) } } }
        }
        lock.lock()
        cache[piece] = ids
        lock.unlock()
        return ids
    }

    // MARK: decoding

    public func decode(_ ids: [Int], skipSpecial: Bool = false) -> String {
        var bytes: [UInt8] = []
        for id in ids {
            guard let tok = tokens[id] else { continue }
            if let a = added.first(where: { $0.id == id }) {
                if skipSpecial && a.special { continue }
                bytes += Array(a.content.utf8)
                continue
            }
            for ch in tok { if let b = BPETokenizer.charToByte[ch] { bytes.append(b) } }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
