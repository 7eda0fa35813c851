import Glibc
/// Sums of many equal-length vectors in one fixed binary tree over their global index, so the
/// bits of the result do not depend on how the vectors were spread over ranks (DESIGN §6).
///
/// The tree is the one a binary counter builds: leaves arrive in index order, and whenever the
/// two newest partial sums cover equally many leaves they are added. For 2^k leaves that is the
/// complete tree ((0+1)+(2+3))+... A rank holding an aligned power-of-two block of leaves
/// therefore holds exactly one node of the global tree, and adding those nodes across ranks with
/// the same counter (in rank order) rebuilds the global sum bit for bit.
public struct CanonicalSum {
    /// Floats per rank and window of the windowed reduce-scatter and allgather (16 MiB).
    public static let window = 4 << 20
    private var stack: [(leaves: Int, sum: [Float])] = []
    public private(set) var count = 0

    public init() {}

    /// Adds the next leaf (or an already summed node of `leaves` leaves) in index order.
    public mutating func push(_ v: [Float], leaves: Int = 1) {
        stack.append((leaves, v))
        count += leaves
        while stack.count >= 2 && stack[stack.count - 1].leaves == stack[stack.count - 2].leaves {
            let b = stack.removeLast()
            var a = stack.removeLast()
            CanonicalSum.addInPlace(&a.sum, b.sum)  // a's buffer is ours now: no copy
            stack.append((a.leaves + b.leaves, a.sum))
        }
    }

    /// The sum; the partial sums left (sizes falling) are added from the newest back.
    public func result() -> [Float]? {
        guard var acc = stack.last?.sum else { return nil }
        for i in stride(from: stack.count - 2, through: 0, by: -1) { acc = CanonicalSum.add(stack[i].sum, acc) }
        return acc
    }

    /// a + b (older + newer: the order the tree fixes).
    public static func add(_ a: [Float], _ b: [Float]) -> [Float] {
        var out = a
        addInPlace(&out, b)
        return out
    }

    public static func addInPlace(_ a: inout [Float], _ b: [Float]) {
        precondition(a.count == b.count, "CanonicalSum: \(a.count) vs \(b.count) elements")
        a.withUnsafeMutableBufferPointer { o in
            b.withUnsafeBufferPointer { bp in
                for i in 0..<o.count { o[i] += bp[i] }
            }
        }
    }
}

extension Communicator {
    /// Reduce-scatter in the canonical order: every rank passes its full vector `x` (its node of
    /// the tree); rank q gets back the sum of `shards[q]` (a range of `x`) over the ranks, added
    /// with `CanonicalSum` in rank order. Bandwidth as a ring reduce-scatter: each rank sends
    /// and receives (size−1)/size of the vector.
    public func reduceScatterCanonical(_ x: [Float], shards: [Range<Int>], window: Int = CanonicalSum.window) throws -> [Float] {
        precondition(shards.count == size)
        if size == 1 { return shards[0] == x.indices ? x : Array(x[shards[0]]) }
        let mine = shards[rank].count
        var out = [Float](unsafeUninitializedCapacity: mine) { _, n in n = mine }
        // A window of every shard at a time (the same offsets into each): the receive buffer is
        // size × window, not the whole vector, and is reused — a full-size buffer had to be
        // faulted in again every step (its spent pages given back to keep the step's peak down).
        let longest = shards.map(\.count).max() ?? 0, win = Swift.max(1, Swift.min(window, longest))
        var recv = [Float](unsafeUninitializedCapacity: win * size) { _, n in n = win * size }
        try x.withUnsafeBufferPointer { s in
            try recv.withUnsafeMutableBufferPointer { r in
                try out.withUnsafeMutableBufferPointer { o in
                    let base = r.baseAddress!
                    for w in stride(from: 0, to: longest, by: win) {
                        let counts = shards.map { Swift.max(0, Swift.min(win, $0.count - w)) }
                        let n = counts[rank]
                        try alltoallv(s.baseAddress!, sendCounts: counts, sendDispls: shards.map { $0.lowerBound + Swift.min(w, $0.count) },
                                      base, recvCounts: Array(repeating: n, count: size), recvDispls: (0..<size).map { $0 * n },
                                      agreed: true)
                        Self.canonicalAdd(base, pieces: size, count: n)
                        (o.baseAddress! + w).update(from: base, count: n)
                    }
                }
            }
        }
        return out
    }

    /// The same tree as CanonicalSum over `pieces` consecutive pieces of `count` at `base`, in
    /// place: the sum ends in the first piece.
    static func canonicalAdd(_ base: UnsafeMutablePointer<Float>, pieces: Int, count: Int) {
        func add(into a: Int, _ b: Int) {
            let pa = base + a * count, pb = base + b * count
            for i in 0..<count { pa[i] += pb[i] }
        }
        var stack: [(leaves: Int, slot: Int)] = []
        for q in 0..<pieces {
            stack.append((1, q))
            while stack.count >= 2 && stack[stack.count - 1].leaves == stack[stack.count - 2].leaves {
                let b = stack.removeLast(), a = stack.removeLast()
                add(into: a.slot, b.slot)
                stack.append((a.leaves + b.leaves, a.slot))
            }
        }
        var acc = stack.last!.slot
        for i in stride(from: stack.count - 2, through: 0, by: -1) {
            add(into: stack[i].slot, acc)  // older + newer, as CanonicalSum.result
            acc = stack[i].slot
        }
        if acc != 0 { base.update(from: base + acc * count, count: count) }
    }

    /// The inverse: each rank holds the updated `shards[rank]` of `x`; afterwards all of `x`.
    public func allgatherShards(_ x: inout [Float], shards: [Range<Int>]) throws {
        if size == 1 { return }
        try x.withUnsafeMutableBufferPointer { b in
            try allgatherv(b.baseAddress!, counts: shards.map(\.count), displs: shards.map(\.lowerBound))
        }
    }
}
