import Foundation
import Autograd
import Collectives

/// A gradient vector's canonical reduce-scatter over a group, posted bucket by bucket while the
/// step's last backward still runs (docs/design.md §11, step 3): the dense vector, whose
/// parameters the tape reports complete one by one, and the experts', whose layers
/// `ExpertParallel` reports as it writes their gradients.
///
/// The vector is cut into buckets of `bucketFloats`. Once every element of a bucket is final,
/// the rank sums it in the canonical tree (its earlier micro-batches' nodes and this one,
/// `CanonicalSum.result(pushing:range:)`) and posts its pieces to their owners, each bucket
/// with its own tag. The owners add what arrives in rank order (`Communicator.canonicalAdd`)
/// when the reduction finishes: the same additions as the one-shot reduce-scatter, so the same
/// bits. Between autograd nodes `betweenNodes` calls MPI so that it can move the data.
///
/// Where the job spans nodes a `ProgressThread` moves the posted messages while the backward
/// computes; `betweenNodes` calls MPI too, which is what moves them on one node (forced there
/// by DEEPTRAIN_BUCKETS=always).
final class BucketedReduceScatter: BackwardObserver {
    /// Floats per bucket (4 MiB): big enough that a message's overhead is small, small enough
    /// that the first buckets leave early in the backward.
    static let bucketFloats = 1 << 20
    /// Seconds between two progress calls during the backward.
    static let progressEvery = 0.000_2

    let count: Int
    /// Each group rank's shard, as runs of the vector (`FlatVector.shards`).
    let shards: [[Range<Int>]]
    let group: Communicator
    let buckets: [Range<Int>]
    let bucketSize: Int
    /// Packs `range` of the gradient vector as it is now.
    private let gradients: (Range<Int>) -> [Float]
    /// Where each parameter lies in the vector (the dense vector: the tape reports parameters).
    private let rangeOfLeaf: [ObjectIdentifier: Range<Int>]
    /// Per bucket: elements not yet complete.
    private var waiting: [Int]
    private var started: [Bool]
    private let earlier: CanonicalSum
    /// Per bucket: this rank's node of the tree (kept until sent), and the peers' pieces of
    /// this rank's shard: per part of the shard in the bucket (`mine`), one slot per group rank.
    private var local: [[Float]]
    private var received: [Storage?]
    /// Per bucket: the runs of this rank's shard in it, each with its offset in the shard.
    private var mine: [[(range: Range<Int>, inShard: Int)]]
    /// With `bf16`: per bucket, this rank's node as sent and the peers' pieces as they arrive.
    private let dtype: CommDType
    private var localBits: [[UInt16]]
    private var receivedBits: [[UInt16]]
    private var transfers: Transfers
    private var lastProgress = 0.0
    private var failure: Error?

    /// A gradient vector of `count` elements, `shards` of it summed on the group's ranks; its
    /// parts are announced with `ready`, or by the tape for `leaves` (each parameter's range).
    init(count: Int, shards: [[Range<Int>]], group: Communicator, earlier: CanonicalSum = CanonicalSum(),
         leaves: [ObjectIdentifier: Range<Int>] = [:], bucketFloats: Int = bucketFloats, dtype: CommDType = .fp32,
         gradients: @escaping (Range<Int>) -> [Float]) {
        precondition(earlier.count == 0 || earlier.dtype == dtype, "the earlier micro-batches' tree rounds otherwise")
        self.dtype = dtype
        self.count = count
        self.shards = shards
        self.group = group
        self.earlier = earlier
        self.gradients = gradients
        rangeOfLeaf = leaves
        bucketSize = bucketFloats
        buckets = stride(from: 0, to: count, by: bucketFloats).map { $0..<Swift.min($0 + bucketFloats, count) }
        precondition(buckets.count < 32_000, "more gradient buckets than message tags")  // below allgather(runs:)'s tag
        waiting = buckets.map(\.count)
        started = [Bool](repeating: false, count: buckets.count)
        local = [[Float]](repeating: [], count: buckets.count)
        received = [Storage?](repeating: nil, count: buckets.count)
        var parts = [[(range: Range<Int>, inShard: Int)]](repeating: [], count: buckets.count), base = 0
        for run in shards[group.rank] {
            for b in (run.isEmpty ? [] : Array((run.lowerBound / bucketFloats)...((run.upperBound - 1) / bucketFloats))) {
                let part = buckets[b].clamped(to: run)
                parts[b].append((part, base + part.lowerBound - run.lowerBound))
            }
            base += run.count
        }
        mine = parts
        localBits = [[UInt16]](repeating: [], count: buckets.count)
        receivedBits = [[UInt16]](repeating: [], count: buckets.count)
        transfers = Transfers(on: group)
    }

    /// The dense vector: its parameters' gradients, reported complete by the tape.
    convenience init(dense vector: FlatVector, flat: FlatLayout, group: Communicator, earlier: CanonicalSum, dtype: CommDType) {
        var leaves: [ObjectIdentifier: Range<Int>] = [:]
        for (i, off) in zip(vector.pieces, vector.offsets) {
            leaves[ObjectIdentifier(flat.pieces[i].tensor)] = off..<(off + flat.pieces[i].tensor.count)
        }
        self.init(count: vector.count, shards: vector.shards, group: group, earlier: earlier, leaves: leaves, dtype: dtype) { range in
            [Float](unsafeUninitializedCapacity: range.count) { o, n in
                for seg in vector.segments(range, flat) {
                    let dst = o.baseAddress! + (seg.at - range.lowerBound)
                    guard let g = flat.pieces[seg.piece].tensor.grad else { dst.initialize(repeating: 0, count: seg.count); continue }
                    let gc = g.isContiguous ? g : g.clone()
                    dst.initialize(from: gc.data + seg.inPiece, count: seg.count)
                }
                n = range.count
            }
        }
    }

    /// `range` of the vector holds its final gradient: buckets it completes leave now.
    func ready(_ range: Range<Int>) {
        guard !range.isEmpty, range.lowerBound < count else { return }
        for b in (range.lowerBound / bucketSize)...((Swift.min(range.upperBound, count) - 1) / bucketSize) {
            waiting[b] -= buckets[b].clamped(to: range).count
            if waiting[b] <= 0 { start(b) }
        }
    }

    func leafGradientReady(_ leaf: Tensor) {
        if let range = rangeOfLeaf[ObjectIdentifier(leaf)] { ready(range) }
    }

    func betweenNodes() {
        guard failure == nil, !transfers.isEmpty else { return }
        let now = ProcessInfo.processInfo.systemUptime
        guard now - lastProgress >= Self.progressEvery else { return }
        lastProgress = now
        do { try transfers.test() } catch { failure = error }
    }

    /// The bucket's node of the tree, sent in pieces to their owners; this rank's piece
    /// received from every other rank.
    private func start(_ b: Int, gradient: [Float]? = nil) {
        guard !started[b], failure == nil else { return }
        started[b] = true
        let range = buckets[b]
        var leaf = gradient ?? gradients(range)
        if earlier.count == 0 {
            dtype.round(&leaf)  // a tree of one leaf: the leaf is its node
            local[b] = leaf
        } else {
            local[b] = earlier.result(pushing: leaf, range: range)
        }
        let total = mine[b].reduce(0) { $0 + $1.range.count }
        // Pooled, not a fresh array: fresh pages each step are slow to touch (docs/benchmarks.md).
        let slots = Storage(uninitialized: Swift.max(total * group.size, 1))
        received[b] = slots
        do {
            if dtype == .bf16 {
                try post16(b, range: range, total: total)
            } else {
                var at = 0
                for part in mine[b] {
                    for q in 0..<group.size where q != group.rank {
                        try transfers.receive(slots.data + at * group.size + q * part.range.count, count: part.range.count, from: q, tag: b)
                    }
                    at += part.range.count
                }
                try local[b].withUnsafeBufferPointer { l in
                    for q in 0..<group.size where q != group.rank {
                        for piece in pieces(of: range, owner: q) {
                            try transfers.send(l.baseAddress! + (piece.lowerBound - range.lowerBound), count: piece.count, to: q, tag: b)
                        }
                    }
                }
            }
        } catch {
            failure = error
        }
    }

    /// The runs of rank `q`'s shard within `range`, in order.
    private func pieces(of range: Range<Int>, owner q: Int) -> [Range<Int>] {
        shards[q].map { $0.clamped(to: range) }.filter { !$0.isEmpty }
    }

    /// Bucket `b`'s transfers in bfloat16: its node, already rounded, packed exactly.
    private func post16(_ b: Int, range: Range<Int>, total: Int) throws {
        localBits[b] = [UInt16](repeating: 0, count: range.count)
        receivedBits[b] = [UInt16](repeating: 0, count: Swift.max(total * group.size, 1))
        local[b].withUnsafeBufferPointer { l in
            localBits[b].withUnsafeMutableBufferPointer { BFloat16.pack(l.baseAddress!, count: range.count, into: $0.baseAddress!) }
        }
        // The arrays stay put until `finish`: nothing appends to them meanwhile.
        try receivedBits[b].withUnsafeMutableBufferPointer { r in
            var at = 0
            for part in mine[b] {
                for q in 0..<group.size where q != group.rank {
                    try transfers.receive(r.baseAddress! + at * group.size + q * part.range.count, count: part.range.count, from: q, tag: b)
                }
                at += part.range.count
            }
        }
        try localBits[b].withUnsafeBufferPointer { l in
            for q in 0..<group.size where q != group.rank {
                for piece in pieces(of: range, owner: q) {
                    try transfers.send(l.baseAddress! + (piece.lowerBound - range.lowerBound), count: piece.count, to: q, tag: b)
                }
            }
        }
    }

    /// After the backward, before the gradients are zeroed: starts the buckets of parameters
    /// the backward never reached (their gradients are zero or were written outside the tape).
    func backwardFinished() {
        for b in buckets.indices where !started[b] { start(b) }
    }

    /// The same, packing from the finished vector `full` itself.
    func backwardFinished(using full: [Float]) {
        for b in buckets.indices where !started[b] { start(b, gradient: Array(full[buckets[b]])) }
    }

    /// Starts what the backward did not (parameters it never reached), waits for every
    /// transfer, and writes the rank's summed shard into `shard`.
    func finish(into shard: inout [Float]) throws {
        for b in buckets.indices where !started[b] { start(b) }
        if let failure { throw failure }
        try transfers.wait()
        let n = mine.reduce(0) { $0 + $1.reduce(0) { $0 + $1.range.count } }
        if shard.count != n { shard = [Float](unsafeUninitializedCapacity: n) { _, k in k = n } }
        shard.withUnsafeMutableBufferPointer { out in
            for (b, range) in buckets.enumerated() where !mine[b].isEmpty {
                let r = received[b]!.data
                let total = mine[b].reduce(0) { $0 + $1.range.count }
                if dtype == .bf16 {
                    receivedBits[b].withUnsafeBufferPointer { BFloat16.unpack($0.baseAddress!, count: total * group.size, into: r) }
                }
                var at = 0
                for part in mine[b] {
                    // This part's slots, one a rank, are also its scratch (`canonicalAdd`).
                    let slots = r + at * group.size, c = part.range.count
                    local[b].withUnsafeBufferPointer { l in
                        let sources = (0..<group.size).map { q in
                            q == group.rank ? l.baseAddress! + (part.range.lowerBound - range.lowerBound) : UnsafePointer(slots + q * c)
                        }
                        Communicator.canonicalAdd(sources, into: out.baseAddress! + part.inShard, scratch: slots, count: c, dtype: dtype)
                    }
                    at += c
                }
            }
        }
    }
}
