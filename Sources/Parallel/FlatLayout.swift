import Autograd
import Collectives
import Optim

/// Where every parameter element lives in a layout: the model's parameters in their canonical
/// order (Hugging Face names, `namedParameters()`), cut into chunks of at most 4096 elements
/// that never straddle two parameters. Chunks are the unit of everything layout-dependent:
/// ZeRO-1 shards are runs of whole chunks, the gradient norm is a sum of per-chunk sums in
/// global chunk order, and checkpoints gather chunks from their owners. So the norm — and with
/// it clipping and the update — has the same bits in every layout.
///
/// A rank holds two flat vectors: its stage's dense parameters (replicated over the dp group,
/// sharded over it for the optimizer) and its stage's experts of its ep block (replicated over
/// the edp group, sharded over that).
package struct FlatLayout {
    package static let chunk = 4096

    package struct Piece {
        package let name: String
        package let tensor: Tensor
        package let stage: Int
        /// (layer, expert) for a routed expert's weight.
        package let expert: (layer: Int, index: Int)?
        package var decays: Bool { tensor.rank >= 2 }
    }
    package struct Chunk { package let piece: Int, start: Int, count: Int }

    package let pieces: [Piece]
    package let chunks: [Chunk]
    let firstChunk: [Int]
    let layout: Layout
    let expertsPerRank: Int

    package init(_ named: [(String, Tensor)], partition: StagePartition, layout: Layout, experts: Int) {
        var p: [Piece] = [], c: [Chunk] = [], first: [Int] = []
        for (name, t) in named {
            let ex = FlatLayout.expert(of: name)
            first.append(c.count)
            var s = 0
            while s < t.count {
                c.append(Chunk(piece: p.count, start: s, count: Swift.min(FlatLayout.chunk, t.count - s)))
                s += FlatLayout.chunk
            }
            p.append(Piece(name: name, tensor: t, stage: partition.stage(of: name), expert: ex))
        }
        pieces = p
        chunks = c
        firstChunk = first
        self.layout = layout
        expertsPerRank = Swift.max(experts / layout.ep, 1)
    }

    /// (layer, expert) of a routed expert's weight, from its Hugging Face name.
    package static func expert(of name: String) -> (layer: Int, index: Int)? {
        guard let r = name.range(of: ".mlp.experts.") else { return nil }
        let layer = Int(name.dropFirst("model.layers.".count).prefix { $0.isNumber })!
        let index = Int(name[r.upperBound...].prefix { $0.isNumber })!
        return (layer, index)
    }

    func chunks(ofPieces ps: [Int]) -> [Int] {
        ps.flatMap { i in firstChunk[i]..<(i + 1 < firstChunk.count ? firstChunk[i + 1] : chunks.count) }
    }

    /// Pieces of a stage: dense, or the experts of ep block `block`.
    package func densePieces(stage: Int) -> [Int] {
        pieces.indices.filter { pieces[$0].stage == stage && pieces[$0].expert == nil }
    }
    package func expertPieces(stage: Int, block: Int) -> [Int] {
        pieces.indices.filter { pieces[$0].stage == stage && pieces[$0].expert.map { $0.index / expertsPerRank == block } == true }
    }

    /// Chunks (global ids) split into `parts` shards by their first element's position:
    /// contiguous runs, or with `interleaved` blocks of `interleaveBlock(total:parts:)`
    /// elements dealt out in turn.
    package func split(_ ids: [Int], parts: Int, interleaved: Bool = false) -> [[Int]] {
        let total = ids.reduce(0) { $0 + chunks[$1].count }
        var out = [[Int]](repeating: [], count: parts)
        var at = 0
        for id in ids {
            out[Self.owner(at: at, total: total, parts: parts, interleaved: interleaved)].append(id)
            at += chunks[id].count
        }
        return out
    }

    /// The part that owns the chunk starting at element `at` of `total`.
    static func owner(at: Int, total: Int, parts: Int, interleaved: Bool) -> Int {
        if interleaved { return (at / interleaveBlock(total: total, parts: parts)) % parts }
        return Swift.min(parts - 1, total == 0 ? 0 : at * parts / total)
    }

    /// Interleaved ownership's block: 2¹⁸ elements (1 MiB), smaller where the vector has fewer
    /// than 8 blocks a rank, so that every rank owns about as much. Why interleave: a rank's
    /// gradients complete from the last layer to the first, so with contiguous shards the
    /// pieces for the first ranks' shards are all ready only at the end of the backward, and
    /// each link between nodes carries its share in half the backward or less
    /// (docs/multinode.md). Dealt-out blocks give every rank, and every link, data to move all
    /// backward long.
    static func interleaveBlock(total: Int, parts: Int) -> Int {
        Swift.max(chunk, Swift.min(1 << 18, total / Swift.max(parts * 8, 1)))
    }

    /// The chunks world rank `w` owns (its dense shard, then its expert shard): it reduces their
    /// gradients, keeps their AdamW moments, and sends them when a checkpoint is gathered.
    package func owned(worldRank w: Int) -> (dense: [Int], expert: [Int]) {
        let s = w / layout.dp, d = w % layout.dp
        let dense = split(chunks(ofPieces: densePieces(stage: s)), parts: layout.dp)[d]
        let expert = split(chunks(ofPieces: expertPieces(stage: s, block: d % layout.ep)), parts: layout.dp / layout.ep)[d / layout.ep]
        return (dense, expert)
    }
}

/// One rank's flat vector over some pieces: packing gradients and values, and its shards.
package struct FlatVector {
    package let pieces: [Int]
    package let offsets: [Int]
    package let count: Int
    /// Each group rank's shard: runs of the vector in order (one run unless interleaved).
    package let shards: [[Range<Int>]]
    /// Global chunk ids of this rank's shard, in order, and their offsets in the vector.
    package let ownedChunks: [Int]

    /// `interleaved`: ownership dealt out in blocks (`FlatLayout.split`), for a group whose
    /// gradients cross nodes; else one contiguous run a rank.
    init(layout f: FlatLayout, pieces ps: [Int], parts: Int, part: Int, interleaved: Bool = false) {
        pieces = ps
        var o: [Int] = [], n = 0
        for i in ps { o.append(n); n += f.pieces[i].tensor.count }
        offsets = o
        count = n
        let ids = f.chunks(ofPieces: ps)
        var runs = [[Range<Int>]](repeating: [], count: parts), at = 0
        for id in ids {
            let q = FlatLayout.owner(at: at, total: n, parts: parts, interleaved: interleaved)
            let r = at..<(at + f.chunks[id].count)
            if let last = runs[q].last, last.upperBound == r.lowerBound { runs[q][runs[q].count - 1] = last.lowerBound..<r.upperBound } else { runs[q].append(r) }
            at += r.count
        }
        shards = runs
        ownedChunks = f.split(ids, parts: parts, interleaved: interleaved)[part]
    }

    /// Elements in group rank `q`'s shard.
    package func shardCount(_ q: Int) -> Int { shards[q].reduce(0) { $0 + $1.count } }

    /// `segments` of every run of rank `q`'s shard, each with its offset in the shard.
    package func shardSegments(_ q: Int, _ f: FlatLayout) -> [(piece: Int, inPiece: Int, at: Int, count: Int, inShard: Int)] {
        var out: [(piece: Int, inPiece: Int, at: Int, count: Int, inShard: Int)] = [], base = 0
        for run in shards[q] {
            for s in segments(run, f) { out.append((s.piece, s.inPiece, s.at, s.count, base + s.at - run.lowerBound)) }
            base += run.count
        }
        return out
    }

    /// The parts of `range` of the vector that lie in each piece: (piece, offset in the piece,
    /// offset in the vector, count).
    package func segments(_ range: Range<Int>, _ f: FlatLayout) -> [(piece: Int, inPiece: Int, at: Int, count: Int)] {
        var out: [(piece: Int, inPiece: Int, at: Int, count: Int)] = []
        for (i, off) in zip(pieces, offsets) {
            let c = (off..<(off + f.pieces[i].tensor.count)).clamped(to: range)
            if !c.isEmpty { out.append((i, c.lowerBound - off, c.lowerBound, c.count)) }
        }
        return out
    }

    /// The pieces' gradients (zeros where none), concatenated.
    package func packGradients(_ f: FlatLayout) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { o, n in
            for (i, off) in zip(pieces, offsets) {
                let t = f.pieces[i].tensor
                guard let g = t.grad else { (o.baseAddress! + off).initialize(repeating: 0, count: t.count); continue }
                let gc = g.isContiguous ? g : g.clone()
                (o.baseAddress! + off).initialize(from: gc.data, count: gc.count)
            }
            n = count
        }
    }

    package func packValues(_ f: FlatLayout) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { o, n in
            for (i, off) in zip(pieces, offsets) {
                let t = f.pieces[i].tensor
                (o.baseAddress! + off).initialize(from: t.data, count: t.count)
            }
            n = count
        }
    }

    /// Every rank holds its updated shard in the parameters; afterwards all of them hold every
    /// shard, straight from tensor to tensor (`Communicator.allgather(runs:)`: each run of a
    /// parameter a rank owns goes to the others as one message, received where that parameter
    /// lives), so no packing into a buffer and unpacking out of it (docs/benchmarks.md).
    package func allgatherValues(_ f: FlatLayout, group: Communicator) throws {
        try group.allgather(runs: shards.indices.map { q in
            shardSegments(q, f).map { (f.pieces[$0.piece].tensor.data + $0.inPiece, $0.count) }
        })
    }
}
