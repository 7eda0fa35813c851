import Foundation
import FileSafety
import Autograd

/// Token shards: the output of `deeptrain prepare`. A directory with `tokenizer.json`,
/// `index.json` and `shard-NNNNN.bin` files of little-endian uint32 token ids; documents are
/// concatenated with the end-of-sequence token between them (packing).
package struct ShardIndex: Codable, Sendable {
    package var format = "deeptrain-shards"
    package var version = 1
    package var tokenizer: String
    package var eosID: Int
    package var vocabSize: Int
    package var documents: Int
    package var tokens: Int
    package var shards: [Shard]

    package struct Shard: Codable, Sendable {
        package var file: String
        package var tokens: Int
    }

    enum CodingKeys: String, CodingKey {
        case format
        case version
        case tokenizer
        case eosID = "eos_id"
        case vocabSize = "vocab_size"
        case documents
        case tokens
        case shards
    }
}

/// Writes shards while documents stream in.
package final class ShardWriter {
    package let dir: String
    let tokenizer: Tokenizer
    let eos: Int
    let shardTokens: Int
    var buffer: [UInt32] = []
    var shards: [ShardIndex.Shard] = []
    package private(set) var documents = 0
    var flushed = 0
    /// Tokens so far, written or buffered.
    package var tokens: Int { flushed + buffer.count }

    package init(dir: String, tokenizer: Tokenizer, eos: Int, shardTokens: Int = 1 << 24) throws {
        self.dir = dir
        self.tokenizer = tokenizer
        self.eos = eos
        self.shardTokens = shardTokens
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    package func add(_ text: String) throws {
        buffer += try tokenizer.encode(text).map { UInt32($0) }
        buffer.append(UInt32(eos))
        documents += 1
        while buffer.count >= shardTokens { try flush(count: shardTokens) }
    }

    func flush(count: Int) throws {
        let name = String(format: "shard-%05d.bin", shards.count)
        let chunk = buffer.prefix(count).map { $0.littleEndian }
        let data = chunk.withUnsafeBytes { Data($0) }
        let path = (dir as NSString).appendingPathComponent(name)
        try data.write(to: URL(fileURLWithPath: path + ".tmp"))
        guard rename(path + ".tmp", path) == 0 else { throw TokenizerError(source: path, message: "cannot be written") }
        shards.append(.init(file: name, tokens: chunk.count))
        flushed += chunk.count
        buffer.removeFirst(chunk.count)
    }

    /// Writes the last shard, the tokenizer and the index (last, so a directory with an index
    /// is complete).
    package func finish() throws -> ShardIndex {
        if !buffer.isEmpty { try flush(count: buffer.count) }
        try tokenizer.save((dir as NSString).appendingPathComponent("tokenizer.json"))
        let index = ShardIndex(tokenizer: "tokenizer.json", eosID: eos, vocabSize: tokenizer.vocabularySize,
                               documents: documents, tokens: tokens, shards: shards)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        let p = (dir as NSString).appendingPathComponent("index.json")
        try enc.encode(index).write(to: URL(fileURLWithPath: p + ".tmp"))
        guard rename(p + ".tmp", p) == 0 else { throw TokenizerError(source: p, message: "cannot be written") }
        return index
    }
}

/// Reads shards memory-mapped and serves training rows: the stream is cut into windows of
/// `length` tokens; row g is window perm(g) of a seeded permutation that depends only on
/// (seed, epoch), never on the parallel layout. The last `heldOut` windows are kept for
/// evaluation and never trained on.
package final class ShardLoader: @unchecked Sendable {
    package let index: ShardIndex
    let maps: [Data]
    let starts: [Int]

    package init(dir: String) throws {
        let p = (dir as NSString).appendingPathComponent("index.json")
        guard FileManager.default.fileExists(atPath: p) else {
            throw TokenizerError(source: dir, message: "has no index.json: not a `deeptrain prepare` output directory")
        }
        let d: Data
        do { d = try readBoundedFile(p, limit: 64 << 20, what: "a shard index") } catch let e as BoundedFileError {
            throw TokenizerError(source: p, message: e.message)
        }
        let idx: ShardIndex
        do { idx = try JSONDecoder().decode(ShardIndex.self, from: d) } catch {
            throw TokenizerError(source: p, message: "is not a shard index: \(error)")
        }
        index = idx
        // A data directory may come from elsewhere: every number in index.json is checked against
        // the files before a token is read, and every token against the vocabulary.
        guard idx.vocabSize > 0, idx.vocabSize <= 1 << 32 else {
            throw TokenizerError(source: p, message: "vocab_size is \(idx.vocabSize); expected 1 ... 2^32")
        }
        var maps: [Data] = [], starts: [Int] = [], pos = 0
        for s in idx.shards {
            guard !s.file.contains("/"), !s.file.hasPrefix("."), !s.file.isEmpty else {
                throw TokenizerError(source: p, message: "names shard \(quoted(s.file)); expected a file name in the same directory")
            }
            let sp = (dir as NSString).appendingPathComponent(s.file)
            guard let m = try? Data(contentsOf: URL(fileURLWithPath: sp), options: .alwaysMapped) else {
                throw TokenizerError(source: sp, message: "is missing (listed in \(p))")
            }
            guard s.tokens >= 0, let bytes = checkedMultiply(s.tokens, 4), m.count == bytes, let next = checkedAdd(pos, s.tokens) else {
                throw TokenizerError(source: sp, message: "has \(m.count) bytes; index.json says \(s.tokens) tokens of 4 bytes: truncated or corrupt")
            }
            if let (offset, token) = Self.firstOutOfVocabulary(m, vocab: idx.vocabSize) {
                throw TokenizerError(source: sp, message: "token \(offset) is id \(token); index.json's vocab_size is \(idx.vocabSize)")
            }
            maps.append(m)
            starts.append(pos)
            pos = next
        }
        guard pos == idx.tokens, idx.eosID >= 0, idx.eosID < idx.vocabSize else {
            throw TokenizerError(source: p, message: "says \(idx.tokens) tokens and eos_id \(idx.eosID); its shards hold \(pos) tokens of vocab_size \(idx.vocabSize)")
        }
        self.maps = maps
        self.starts = starts
    }

    /// The first token at or past `vocab` in a shard, with its position (a scan at memory speed,
    /// once, when the directory is opened).
    static func firstOutOfVocabulary(_ m: Data, vocab: Int) -> (Int, Int)? {
        m.withUnsafeBytes { raw -> (Int, Int)? in
            let n = raw.count / 4
            var i = 0
            while i < n {
                let t = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                if t >= vocab { return (i, t) }
                i += 1
            }
            return nil
        }
    }

    package var tokenCount: Int { index.tokens }

    /// Token at stream position `i`.
    @inline(__always)
    func token(_ i: Int) -> Int {
        var lo = 0, hi = starts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if starts[mid] <= i { lo = mid } else { hi = mid - 1 }
        }
        let off = (i - starts[lo]) * 4
        return maps[lo].withUnsafeBytes { Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: off, as: UInt32.self))) }
    }

    package func windows(length: Int) -> Int { index.tokens / length }

    /// `count` rows of `length` tokens from global row `first`; `heldOut` windows at the end of
    /// the stream are excluded.
    package func rows(first: Int, count: Int, length: Int, seed: UInt64, heldOut: Int) -> [Int] {
        let train = Swift.max(windows(length: length) - heldOut, 1)
        var out: [Int] = []
        out.reserveCapacity(count * length)
        for g in first..<(first + count) {
            let epoch = g / train, k = g % train
            let w = ShardLoader.permute(k, n: train, seed: seed &+ UInt64(epoch))
            for j in 0..<length { out.append(token(w * length + j)) }
        }
        return out
    }

    package func heldOutRows(first: Int, count: Int, length: Int, heldOut: Int) -> [Int] {
        let n = windows(length: length), base = Swift.max(n - heldOut, 0)
        var out: [Int] = []
        for g in first..<(first + count) {
            let w = base + g % Swift.max(heldOut, 1)
            for j in 0..<length { out.append(token(Swift.min(w, n - 1) * length + j)) }
        }
        return out
    }

    /// A bijection of 0..<n keyed by `seed`: a 4-round Feistel network on the next power of
    /// two, cycle-walking back into range. Any row's window is computed on its own.
    static func permute(_ x: Int, n: Int, seed: UInt64) -> Int {
        if n <= 1 { return 0 }
        var bits = 1
        while (1 << bits) < n { bits += 1 }
        if bits % 2 == 1 { bits += 1 }
        let half = bits / 2, mask = (1 << half) - 1
        let rng = Philox(seed: seed, purpose: "shard-order")
        var v = x
        repeat {
            var l = v >> half, r = v & mask
            for round in 0..<4 {
                let f = Int(rng.uint64(UInt64(round) << 32 | UInt64(r)) & UInt64(mask))
                (l, r) = (r, l ^ f)
            }
            v = (l << half) | r
        } while v >= n
        return v
    }
}
