import Autograd

/// The fixed order in which a token's routed-expert results (and, backward, its input
/// gradients) are added: a binary tree over the expert indices — leaves 0, 1, 2, … padded to a
/// power of two, the experts a token did not use left out — so the bits of the sum do not
/// depend on where the experts ran (docs/design.md §6.3).
///
/// Why a tree and not left to right: an owner holding an aligned power-of-two block of experts
/// holds one node of the tree, so it can add its experts' results for a token before they
/// travel — one row a (token, owner) instead of one a (token, expert) — and the source, adding
/// the owners' nodes with the same tree, gets the bits one process gets. A block that is not a
/// power of two is tiled by a few aligned nodes (`cover`), each sent as a row of its own.
/// For two experts a token the tree is a + b, the left-to-right order.
package enum ExpertSumTree {
    /// The aligned power-of-two blocks tiling `range`, in order: each is one node of the tree.
    package static func cover(_ range: Range<Int>) -> [Range<Int>] {
        var nodes: [Range<Int>] = [], lo = range.lowerBound
        while lo < range.upperBound {
            var size = 1
            while lo % (2 * size) == 0 && lo + 2 * size <= range.upperBound { size *= 2 }
            nodes.append(lo..<(lo + size))
            lo += size
        }
        return nodes
    }

    /// Adds `count` disjoint aligned nodes, in increasing order of their first expert
    /// `first(i)`, each a row of `width` floats at `row(i)`, as the tree does; the sum ends in
    /// `row(0)`. `bf16`: every node computed is rounded to bfloat16 (the leaves the caller's).
    ///
    /// Two neighbours are added when their common ancestor is lower in the tree than the next
    /// one's with the newer: the stack keeps partial sums whose ancestors rise.
    package static func sum(count: Int, width: Int, bf16: Bool = false, first: (Int) -> Int,
                            row: (Int) -> UnsafeMutablePointer<Float>) {
        if count < 2 { return }
        withUnsafeTemporaryAllocation(of: Int.self, capacity: count) { stack in
            var top = 0
            func level(_ a: Int, _ b: Int) -> Int { Int.bitWidth - (first(a) ^ first(b)).leadingZeroBitCount }
            func mergeTop() {
                let into = row(stack[top - 2]), from = row(stack[top - 1])
                for j in 0..<width { into[j] += from[j] }
                if bf16 { BFloat16.round(into, count: width) }
                top -= 1
            }
            for i in 0..<count {
                while top >= 2 && level(stack[top - 2], stack[top - 1]) < level(stack[top - 1], i) { mergeTop() }
                stack[top] = i
                top += 1
            }
            while top >= 2 { mergeTop() }
        }
    }
}

/// Each token's terms for `ExpertSumTree`, in the order the tree takes them: a term is a row
/// of some buffer, possibly times a routing weight, standing for one node of the tree.
package struct TokenTerms: Sendable {
    /// Token t's terms are first[t] ..< first[t + 1].
    package let first: [Int]
    /// Per term: the first expert of its node, its row in the buffer summed, and its weight's
    /// index (−1: unweighted).
    package let node: [Int], row: [Int], slot: [Int]
    package let most: Int

    package init(first: [Int], node: [Int], row: [Int], slot: [Int]) {
        self.first = first
        self.node = node
        self.row = row
        self.slot = slot
        var most = 0
        for t in 0..<(first.count - 1) { most = Swift.max(most, first[t + 1] - first[t]) }
        self.most = most
    }

    /// The terms of experts `assignments[e]` (token, slot) in token order, each its own leaf;
    /// rows numbered expert by expert in that order, as `expertFFN` lays them out.
    package init(assignments: [[(token: Int, slot: Int)]], tokens n: Int) {
        var first = [Int](repeating: 0, count: n + 1)
        for list in assignments { for a in list { first[a.token + 1] += 1 } }
        for t in 0..<n { first[t + 1] += first[t] }
        var next = first, node = [Int](repeating: 0, count: first[n]), row = node, slot = node
        var r = 0
        for (e, list) in assignments.enumerated() {
            for a in list {
                let i = next[a.token]
                next[a.token] += 1
                (node[i], row[i], slot[i]) = (e, r, a.slot)
                r += 1
            }
        }
        self.init(first: first, node: node, row: row, slot: slot)
    }

    /// For each token t: the tree sum of its terms — rows of `source` (`width` apart), each
    /// times `weights[slot]` when given — added to row t of `out` (`assign`: written, not added;
    /// a token without terms is left alone). `bf16`: leaves and nodes rounded to bfloat16.
    package func sum(_ source: UnsafePointer<Float>, width d: Int, weights: UnsafePointer<Float>?, bf16: Bool = false,
                     into out: UnsafeMutablePointer<Float>, assign: Bool = false) {
        let tokens = first.count - 1
        if tokens == 0 || most == 0 { return }
        parallelFor(tokens, grain: 64) { range in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: most * d) { scratch in
                let s = scratch.baseAddress!
                for t in range {
                    let lo = first[t], count = first[t + 1] - lo
                    if count == 0 { continue }
                    let dst = out + t * d
                    if count == 1 && !bf16 {
                        // One term is its own sum: no scratch (the same roundings: w·x, then +).
                        let from = source + row[lo] * d
                        if let weights, slot[lo] >= 0 {
                            let w = weights[slot[lo]]
                            if assign { for j in 0..<d { dst[j] = w * from[j] } } else { for j in 0..<d { dst[j] += w * from[j] } }
                        } else if assign {
                            dst.update(from: from, count: d)
                        } else {
                            for j in 0..<d { dst[j] += from[j] }
                        }
                        continue
                    }
                    if count == 2 && !bf16 && (weights == nil || (slot[lo] >= 0 && slot[lo + 1] >= 0)) {
                        // Two terms: the tree is left + right (each product rounded first, as a leaf is).
                        let a = source + row[lo] * d, b = source + row[lo + 1] * d
                        if let weights {
                            let wa = weights[slot[lo]], wb = weights[slot[lo + 1]]
                            if assign { for j in 0..<d { dst[j] = wa * a[j] + wb * b[j] } } else { for j in 0..<d { dst[j] += wa * a[j] + wb * b[j] } }
                        } else if assign {
                            for j in 0..<d { dst[j] = a[j] + b[j] }
                        } else {
                            for j in 0..<d { dst[j] += a[j] + b[j] }
                        }
                        continue
                    }
                    for i in 0..<count {
                        let leaf = s + i * d, from = source + row[lo + i] * d
                        if let weights, slot[lo + i] >= 0 {
                            let w = weights[slot[lo + i]]
                            for j in 0..<d { leaf[j] = w * from[j] }
                        } else {
                            leaf.update(from: from, count: d)
                        }
                        if bf16 { BFloat16.round(leaf, count: d) }
                    }
                    ExpertSumTree.sum(count: count, width: d, bf16: bf16, first: { node[lo + $0] }, row: { s + $0 * d })
                    if assign { dst.update(from: s, count: d) } else { for j in 0..<d { dst[j] += s[j] } }
                }
            }
        }
    }
}
