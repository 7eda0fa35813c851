import Testing
@testable import DeepSeek
@testable import Autograd

/// The order a token's expert results are added in: aligned power-of-two nodes tile a rank's
/// block, and adding any tiling's node sums with the tree gives the bits of adding the leaves
/// — the tree a recursive definition gives — whatever the blocks.
@Suite struct ExpertSumTreeTests {
    @Test func coverTilesARangeWithAlignedPowerOfTwoNodes() {
        #expect(ExpertSumTree.cover(0..<12) == [0..<8, 8..<12])
        #expect(ExpertSumTree.cover(6..<12) == [6..<8, 8..<12])
        #expect(ExpertSumTree.cover(3..<6) == [3..<4, 4..<6])
        #expect(ExpertSumTree.cover(20..<40) == [20..<24, 24..<32, 32..<40])
        for lo in 0..<40 {
            for hi in (lo + 1)...48 {
                let nodes = ExpertSumTree.cover(lo..<hi)
                #expect(nodes.first?.lowerBound == lo && nodes.last?.upperBound == hi)
                for (a, b) in zip(nodes, nodes.dropFirst()) { #expect(a.upperBound == b.lowerBound) }
                for n in nodes { #expect(n.count.nonzeroBitCount == 1 && n.lowerBound % n.count == 0) }
            }
        }
    }

    /// The tree by its definition: node [lo, lo + size) is its left half plus its right half,
    /// absent halves left out.
    func reference(_ leaves: [Int: Float], lo: Int, size: Int) -> Float? {
        if size == 1 { return leaves[lo] }
        let l = reference(leaves, lo: lo, size: size / 2), r = reference(leaves, lo: lo + size / 2, size: size / 2)
        if let l, let r { return l + r }
        return l ?? r
    }

    func treeSum(_ parts: [(first: Int, value: Float)]) -> Float {
        var rows = parts.map(\.value)
        rows.withUnsafeMutableBufferPointer { b in
            ExpertSumTree.sum(count: parts.count, width: 1, first: { parts[$0].first }, row: { b.baseAddress! + $0 })
        }
        return rows[0]
    }

    @Test func anyBlockingOfTheExpertsGivesTheTreesBits() {
        let rng = Philox(seed: 21)
        var differsFromLeftToRight = false
        for trial in 0..<400 {
            let experts = 24, k = 2 + trial % 7
            // K distinct experts, values of mixed magnitude so that the order shows.
            var chosen = Set<Int>(), i: UInt64 = 0
            while chosen.count < k { chosen.insert(Int(rng.uniform(UInt64(trial) * 1000 + i) * Float(experts)) % experts); i += 1 }
            let sorted = chosen.sorted()
            var leaves: [Int: Float] = [:]
            for (j, e) in sorted.enumerated() {
                leaves[e] = rng.normal(UInt64(trial) * 1000 + 500 + UInt64(j)) * Float(1 << ((j * 7) % 24))
            }
            let want = reference(leaves, lo: 0, size: 32)!
            #expect(treeSum(sorted.map { ($0, leaves[$0]!) }).bitPattern == want.bitPattern)
            // Owners of 24 / ep experts each sum their cover nodes; the source adds the nodes.
            for ep in [2, 3, 4, 6, 8] {
                let per = experts / ep
                var parts: [(first: Int, value: Float)] = []
                for owner in 0..<ep {
                    for node in ExpertSumTree.cover((owner * per)..<((owner + 1) * per)) {
                        let inside = sorted.filter { node.contains($0) }
                        if inside.isEmpty { continue }
                        parts.append((node.lowerBound, treeSum(inside.map { ($0, leaves[$0]!) })))
                    }
                }
                #expect(treeSum(parts).bitPattern == want.bitPattern, "ep \(ep), experts \(sorted)")
            }
            let serial = sorted.dropFirst().reduce(leaves[sorted[0]]!) { $0 + leaves[$1]! }
            if serial.bitPattern != want.bitPattern { differsFromLeftToRight = true }
        }
        #expect(differsFromLeftToRight, "no case told the tree from left-to-right addition")
    }

    /// `TokenTerms.sum` (with its shortcuts for one and two terms) gives the tree's bits: each
    /// leaf w·x rounded, then the tree's additions, then added to (or written into) the row.
    @Test func tokenTermsAddEachTokensTermsInTheTreesOrder() {
        let rng = Philox(seed: 33), d = 5, rowsIn = 12
        let source = (0..<(rowsIn * d)).map { rng.normal(UInt64($0)) * Float(1 << ($0 % 13)) }
        let weights = (0..<rowsIn).map { rng.normal(UInt64(1000 + $0)) }
        // Tokens with 0, 1, 2, 3 and 4 terms (nodes in increasing order, rows anywhere).
        let first = [0, 0, 1, 3, 6, 10]
        let node = [5, 2, 9, 0, 3, 6, 1, 2, 4, 7]
        let row = [3, 0, 7, 11, 2, 5, 9, 1, 4, 8]
        for weighted in [false, true] {
            let terms = TokenTerms(first: first, node: node, row: row, slot: weighted ? row : [Int](repeating: -1, count: row.count))
            for assign in [false, true] {
                let start = (0..<(5 * d)).map { Float($0) * 0.25 - 3 }
                var got = start
                source.withUnsafeBufferPointer { s in
                    weights.withUnsafeBufferPointer { w in
                        got.withUnsafeMutableBufferPointer { o in
                            terms.sum(s.baseAddress!, width: d, weights: weighted ? w.baseAddress! : nil, into: o.baseAddress!, assign: assign)
                        }
                    }
                }
                for t in 0..<5 {
                    let range = first[t]..<first[t + 1]
                    for j in 0..<d {
                        let want: Float
                        if range.isEmpty {
                            want = start[t * d + j]
                        } else {
                            let leaves = range.map { i -> (first: Int, value: Float) in
                                let x = source[row[i] * d + j]
                                return (node[i], weighted ? weights[row[i]] * x : x)
                            }
                            let root = treeSum(leaves)
                            want = assign ? root : start[t * d + j] + root
                        }
                        #expect(got[t * d + j].bitPattern == want.bitPattern, "token \(t), column \(j), weighted \(weighted), assign \(assign)")
                    }
                }
            }
        }
    }
}
