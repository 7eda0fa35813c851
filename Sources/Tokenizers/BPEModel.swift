import Foundation

/// The model step: byte-pair encoding of one piece (tokenizer.json `model` of type BPE). The
/// piece's characters become symbols, then the adjacent pair with the lowest merge rank is
/// merged (the leftmost on a tie) until no pair has a merge.
final class BPEModel: @unchecked Sendable {
    let vocab: [String: Int]
    let idToToken: [Int: String]
    /// Pair (left id << 32 | right id) → merge rank << 32 | merged id.
    let merges: [UInt64: UInt64]
    /// The merges as loaded, for saving.
    let mergeList: [(String, String)]
    let unk: Int?
    let unkToken: String?
    let continuingSubwordPrefix: String?
    let endOfWordSuffix: String?
    let fuseUnk: Bool
    let byteFallback: Bool
    let ignoreMerges: Bool
    /// Single-character tokens by scalar, the symbols every piece starts from.
    private let scalarIds: [UInt32: Int32]
    private let byteIds: [Int32?]

    private var cache: [[UInt32]: [Int32]] = [:]
    private let lock = NSLock()

    struct Options {
        var unkToken: String? = nil
        var continuingSubwordPrefix: String? = nil
        var endOfWordSuffix: String? = nil
        var fuseUnk = false
        var byteFallback = false
        var ignoreMerges = false
    }

    /// - Throws: a message naming the merge whose parts or result are not in the vocabulary.
    init(vocab: [String: Int], merges: [(String, String)], options o: Options, source: String) throws {
        self.vocab = vocab
        var t: [Int: String] = [:]
        for (k, v) in vocab { t[v] = k }
        idToToken = t
        mergeList = merges
        unkToken = o.unkToken
        unk = o.unkToken.flatMap { vocab[$0] }
        continuingSubwordPrefix = o.continuingSubwordPrefix
        endOfWordSuffix = o.endOfWordSuffix
        fuseUnk = o.fuseUnk
        byteFallback = o.byteFallback
        ignoreMerges = o.ignoreMerges
        let prefixLength = o.continuingSubwordPrefix?.count ?? 0
        var m: [UInt64: UInt64] = [:]
        m.reserveCapacity(merges.count)
        for (rank, (a, b)) in merges.enumerated() {
            guard let ia = vocab[a], let ib = vocab[b] else {
                throw TokenizerError(source: source, message: "model.merges[\(rank)]: \"\(a) \(b)\": \(vocab[a] == nil ? a : b) is not in model.vocab")
            }
            let merged = a + String(b.dropFirst(prefixLength))
            guard let im = vocab[merged] else {
                throw TokenizerError(source: source, message: "model.merges[\(rank)]: the merged token \(merged.debugDescription) is not in model.vocab")
            }
            let key = UInt64(ia) << 32 | UInt64(ib)
            if m[key] == nil { m[key] = UInt64(rank) << 32 | UInt64(im) }
        }
        self.merges = m
        var s: [UInt32: Int32] = [:]
        for (k, v) in vocab {
            let u = k.unicodeScalars
            if u.count == 1 { s[u.first!.value] = Int32(v) }
        }
        scalarIds = s
        byteIds = (0..<256).map { b in vocab[String(format: "<0x%02X>", b)].map(Int32.init) }
    }

    var maxId: Int { vocab.values.max() ?? -1 }

    func tokenize(_ piece: [UInt32]) -> [Int32] {
        if piece.isEmpty { return [] }
        if ignoreMerges, let id = vocab[piece.string] { return [Int32(id)] }
        lock.lock()
        if let hit = cache[piece] { lock.unlock(); return hit }
        lock.unlock()
        var symbols = initialSymbols(piece)
        merge(&symbols)
        if piece.count < 256 {
            lock.lock()
            if cache.count > 200_000 { cache.removeAll(keepingCapacity: true) }
            cache[piece] = symbols
            lock.unlock()
        }
        return symbols
    }

    private func initialSymbols(_ piece: [UInt32]) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(piece.count)
        let plain = continuingSubwordPrefix == nil && endOfWordSuffix == nil
        var lastWasUnk = false
        for (i, c) in piece.enumerated() {
            var id: Int32?
            if plain {
                id = scalarIds[c]
            } else {
                var s = Unicode.Scalar(c).map { String(Character($0)) } ?? ""
                if i > 0, let p = continuingSubwordPrefix { s = p + s }
                if i == piece.count - 1, let x = endOfWordSuffix { s += x }
                id = vocab[s].map(Int32.init)
            }
            if let id {
                out.append(id)
                lastWasUnk = false
                continue
            }
            if byteFallback {
                let bytes = ByteLevel.utf8(c)
                let ids = bytes.compactMap { byteIds[Int($0)] }
                if ids.count == bytes.count {
                    out += ids
                    lastWasUnk = false
                    continue
                }
            }
            if let unk {
                if !(fuseUnk && lastWasUnk) { out.append(Int32(unk)) }
                lastWasUnk = true
            }
        }
        return out
    }

    private func merge(_ symbols: inout [Int32]) {
        if symbols.count > 48 { mergeLong(&symbols); return }
        while symbols.count > 1 {
            var best = UInt64.max, at = -1
            for i in 0..<(symbols.count - 1) {
                if let m = merges[pairKey(symbols[i], symbols[i + 1])], m < best {
                    best = m
                    at = i
                }
            }
            if at < 0 { return }
            symbols[at] = Int32(truncatingIfNeeded: best & 0xFFFF_FFFF)
            symbols.remove(at: at + 1)
        }
    }

    @inline(__always) private func pairKey(_ a: Int32, _ b: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
    }

    /// The same merges for a long piece (text without a pre-tokenizer is one piece): symbols in a
    /// linked list and candidate pairs in a heap ordered by (rank, position), as tokenizers
    /// does, so the work grows as n log n rather than n².
    private func mergeLong(_ symbols: inout [Int32]) {
        let n = symbols.count
        var next = Array(1...n), prev = Array(-1..<(n - 1))
        next[n - 1] = -1
        var alive = [Bool](repeating: true, count: n)
        // Entries: rank << 32 | position, smallest first; the merged id is looked up again.
        var heap = MinHeap()
        for i in 0..<(n - 1) {
            if let m = merges[pairKey(symbols[i], symbols[i + 1])] { heap.push((m >> 32) << 32 | UInt64(i)) }
        }
        while let top = heap.pop() {
            let pos = Int(top & 0xFFFF_FFFF), rank = top >> 32
            guard alive[pos], next[pos] >= 0 else { continue }
            let right = next[pos]
            // A stale entry: the pair at this position has changed since it was queued.
            guard let m = merges[pairKey(symbols[pos], symbols[right])], m >> 32 == rank else { continue }
            symbols[pos] = Int32(truncatingIfNeeded: m & 0xFFFF_FFFF)
            alive[right] = false
            next[pos] = next[right]
            if next[right] >= 0 { prev[next[right]] = pos }
            if prev[pos] >= 0, let pm = merges[pairKey(symbols[prev[pos]], symbols[pos])] {
                heap.push((pm >> 32) << 32 | UInt64(prev[pos]))
            }
            if next[pos] >= 0, let nm = merges[pairKey(symbols[pos], symbols[next[pos]])] {
                heap.push((nm >> 32) << 32 | UInt64(pos))
            }
        }
        var out: [Int32] = []
        var i = 0
        while i >= 0 {
            out.append(symbols[i])
            i = next[i]
        }
        symbols = out
    }
}

/// A binary min-heap of packed (rank, position) keys.
struct MinHeap {
    private var items: [UInt64] = []

    mutating func push(_ v: UInt64) {
        items.append(v)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if items[parent] <= items[i] { break }
            items.swapAt(parent, i)
            i = parent
        }
    }

    mutating func pop() -> UInt64? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < items.count && items[l] < items[m] { m = l }
                if r < items.count && items[r] < items[m] { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return first
    }
}
