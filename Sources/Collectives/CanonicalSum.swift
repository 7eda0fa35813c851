import Glibc
import Autograd
/// Sums of many equal-length vectors in one fixed binary tree over their global index, so the
/// bits of the result do not depend on how the vectors were spread over ranks (docs/design.md §6.3).
///
/// The tree is the one a binary counter builds: leaves arrive in index order, and whenever the
/// two newest partial sums cover equally many leaves they are added. For 2^k leaves that is the
/// complete tree ((0+1)+(2+3))+... A rank holding an aligned power-of-two block of leaves
/// therefore holds exactly one node of the global tree, and adding those nodes across ranks with
/// the same counter (in rank order) rebuilds the global sum bit for bit.
package struct CanonicalSum {
    /// Floats per rank and window of the windowed reduce-scatter and allgather (16 MiB).
    package static let window = 4 << 20
    private var stack: [(leaves: Int, sum: [Float])] = []
    package private(set) var count = 0
    /// `bf16`: every leaf pushed and every partial sum is rounded to bfloat16 (`CommDType`).
    package let dtype: CommDType

    package init(dtype: CommDType = .fp32) { self.dtype = dtype }

    /// Adds the next leaf (or an already summed node of `leaves` leaves) in index order.
    /// `consuming`: a leaf handed over whole is rounded in place, not copied.
    package mutating func push(_ v: consuming [Float], leaves: Int = 1) {
        dtype.round(&v)
        stack.append((leaves, v))
        count += leaves
        while stack.count >= 2 && stack[stack.count - 1].leaves == stack[stack.count - 2].leaves {
            let b = stack.removeLast()
            var a = stack.removeLast()
            CanonicalSum.nodeInPlace(&a.sum, b.sum, dtype: dtype)  // a's buffer is ours now: no copy
            stack.append((a.leaves + b.leaves, a.sum))
        }
    }

    /// The sum; the partial sums left (sizes falling) are added from the newest back.
    package func result() -> [Float]? {
        guard var acc = stack.last?.sum else { return nil }
        for i in stride(from: stack.count - 2, through: 0, by: -1) { acc = CanonicalSum.node(stack[i].sum, acc, dtype: dtype) }
        return acc
    }

    /// What `result()` would give for `range` of the vectors after `push(leaf)`, where `leaf`
    /// holds that range only: the same additions, element for element, on a slice — so a rank
    /// can sum the last micro-batch's gradient piece by piece as the backward finishes them.
    package func result(pushing leaf: [Float], range: Range<Int>) -> [Float] {
        var slice = CanonicalSum(dtype: dtype)
        for node in stack { slice.push(Array(node.sum[range]), leaves: node.leaves) }
        slice.push(leaf)
        return slice.result()!
    }

    /// a + b (older + newer: the order the tree fixes).
    package static func add(_ a: [Float], _ b: [Float]) -> [Float] { node(a, b, dtype: .fp32) }

    package static func addInPlace(_ a: inout [Float], _ b: [Float]) { nodeInPlace(&a, b, dtype: .fp32) }

    /// a + b as a node of a tree that rounds to `dtype`.
    static func node(_ a: [Float], _ b: [Float], dtype: CommDType) -> [Float] {
        var out = a
        nodeInPlace(&out, b, dtype: dtype)
        return out
    }

    static func nodeInPlace(_ a: inout [Float], _ b: [Float], dtype: CommDType) {
        precondition(a.count == b.count, "CanonicalSum: \(a.count) vs \(b.count) elements")
        a.withUnsafeMutableBufferPointer { o in
            b.withUnsafeBufferPointer { bp in
                for i in 0..<o.count { o[i] += bp[i] }
            }
            if let base = o.baseAddress { dtype.round(base, count: o.count) }
        }
    }
}

extension Communicator {
    /// Reduce-scatter in the canonical order: every rank passes its full vector `x` (its node of
    /// the tree); rank q gets back the sum of `shards[q]` (a range of `x`) over the ranks, added
    /// with `CanonicalSum` in rank order. Bandwidth as a ring reduce-scatter: each rank sends
    /// and receives (size−1)/size of the vector.
    package func reduceScatterCanonical(_ x: [Float], shards: [Range<Int>], window: Int = CanonicalSum.window,
                                       dtype: CommDType = .fp32) throws -> [Float] {
        var out: [Float] = []
        try reduceScatterCanonical(x, shards: shards, into: &out, window: window, dtype: dtype)
        return out
    }

    /// The same into `out`, whose storage is reused when it already has the shard's count: a
    /// trainer keeps its shards' arrays from step to step, because a fresh large array each step
    /// may land on pages new to the process, which are slow to touch (docs/benchmarks.md).
    /// With `bf16`, `x` must be a node of the tree (rounded: `CommDType`): it travels as
    /// bfloat16, exactly, and each partial sum is rounded again.
    package func reduceScatterCanonical(_ x: [Float], shards: [Range<Int>], into out: inout [Float],
                                       window: Int = CanonicalSum.window, dtype: CommDType = .fp32) throws {
        precondition(shards.count == size)
        if size == 1 {
            out = shards[0] == x.indices ? x : Array(x[shards[0]])  // x's storage itself: no copy
            return
        }
        let mine = shards[rank].count
        if out.count != mine { out = [Float](unsafeUninitializedCapacity: mine) { _, n in n = mine } }
        let longest = shards.map(\.count).max() ?? 0, win = Swift.max(1, Swift.min(window, longest))
        try x.withUnsafeBufferPointer { s in
            try out.withUnsafeMutableBufferPointer { o in
                // A window of every shard at a time (the same offsets into each): the receive
                // buffer is size × window, not the whole vector, and the same one every call.
                // The rank's own piece is read where it is, not sent to itself.
                try CollectiveBuffer.shared.withFloats(win * size) { base in
                    for w in stride(from: 0, to: longest, by: win) {
                        let n = Swift.max(0, Swift.min(win, mine - w))
                        var sendCounts = shards.map { Swift.max(0, Swift.min(win, $0.count - w)) }
                        var recvCounts = Array(repeating: n, count: size)
                        sendCounts[rank] = 0
                        recvCounts[rank] = 0
                        let sendDispls = shards.map { $0.lowerBound + Swift.min(w, $0.count) }
                        if dtype == .bf16 {
                            try alltoallvBFloat16(s.baseAddress!, sendCounts: sendCounts, sendDispls: sendDispls,
                                                  base, recvCounts: recvCounts, recvDispls: (0..<size).map { $0 * n })
                        } else {
                            try alltoallv(s.baseAddress!, sendCounts: sendCounts, sendDispls: sendDispls,
                                          base, recvCounts: recvCounts, recvDispls: (0..<size).map { $0 * n })
                        }
                        guard n > 0 else { continue }
                        let sources = (0..<size).map { q in q == rank ? s.baseAddress! + shards[rank].lowerBound + w : UnsafePointer(base + q * n) }
                        Self.canonicalAdd(sources, into: o.baseAddress! + w, scratch: base, count: n, dtype: dtype)
                    }
                }
            }
        }
    }

    /// The same tree as CanonicalSum over the pieces `sources` (each `count` long), the sum
    /// written to `dst`; partial sums of piece q go to `scratch + q × count` (which may be
    /// piece q's own source: the adds are elementwise).
    package static func canonicalAdd(_ sources: [UnsafePointer<Float>], into dst: UnsafeMutablePointer<Float>,
                             scratch: UnsafeMutablePointer<Float>, count: Int, dtype: CommDType = .fp32) {
        var read = sources
        let adds = sources.count - 1
        var done = 0
        // Piece a (older) + piece b (newer), the order the tree fixes; the last add writes `dst`.
        func add(into a: Int, _ b: Int) {
            done += 1
            let out = done == adds ? dst : scratch + a * count
            let pa = read[a], pb = read[b]
            for i in 0..<count { out[i] = pa[i] + pb[i] }
            dtype.round(out, count: count)
            read[a] = UnsafePointer(out)
        }
        var stack: [(leaves: Int, slot: Int)] = []
        for q in 0..<sources.count {
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
        if adds == 0 { dst.update(from: read[0], count: count) }
    }

    /// `alltoallv` of floats that are bfloat16 values, sent as bfloat16: half the bytes.
    package func alltoallvBFloat16(_ send: UnsafePointer<Float>, sendCounts: [Int], sendDispls: [Int],
                                   _ receive: UnsafeMutablePointer<Float>, recvCounts: [Int], recvDispls: [Int]) throws {
        let packed = displacements(sendCounts), arriving = displacements(recvCounts)
        var out = [UInt16](repeating: 0, count: Swift.max(sendCounts.reduce(0, +), 1))
        var into = [UInt16](repeating: 0, count: Swift.max(recvCounts.reduce(0, +), 1))
        try out.withUnsafeMutableBufferPointer { o in
            try into.withUnsafeMutableBufferPointer { i in
                for q in 0..<size where sendCounts[q] > 0 {
                    BFloat16.pack(send + sendDispls[q], count: sendCounts[q], into: o.baseAddress! + packed[q])
                }
                try alltoallv(UnsafePointer(o.baseAddress!), sendCounts: sendCounts, sendDispls: packed,
                              i.baseAddress!, recvCounts: recvCounts, recvDispls: arriving)
                for q in 0..<size where recvCounts[q] > 0 {
                    BFloat16.unpack(i.baseAddress! + arriving[q], count: recvCounts[q], into: receive + recvDispls[q])
                }
            }
        }
    }

    /// The inverse: each rank holds the updated `shards[rank]` of `x`; afterwards all of `x`.
    package func allgatherShards(_ x: inout [Float], shards: [Range<Int>]) throws {
        if size == 1 { return }
        try x.withUnsafeMutableBufferPointer { b in
            try allgatherv(b.baseAddress!, counts: shards.map(\.count), displs: shards.map(\.lowerBound))
        }
    }
}
