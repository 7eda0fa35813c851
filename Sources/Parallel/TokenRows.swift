import Autograd
import DeepSeek

/// A source's side of an MoE layer's exchange: one row a (token, owner) — a token's input
/// travels once to each rank holding one of its experts, however many of them it uses there
/// (DeepSeek-V3 §3.2.2) — in send order, owner then token; each row's assignments (local
/// expert, routing-weight slot) in expert order; and what comes back: one row per
/// (token, owner, `ExpertSumTree` node of the owner's block the token uses), which the source
/// adds with the tree.
struct TokenRows {
    /// Per row, in send order: the token.
    let token: [Int]
    let rowsPerOwner: [Int]
    /// Per assignment, in send order (row, then expert): the local expert at its owner and the
    /// routing weight's slot.
    let localExpert: [Int], slot: [Int]
    /// Row r's assignments are firstAssignment[r] ..< firstAssignment[r + 1].
    let firstAssignment: [Int]
    /// [owner][local expert]: the assignments sent (what the owner's segments hold).
    let assignmentsPerExpert: [[Int]]
    /// The rows each owner returns (one per node of its block a token uses).
    let partialsPerOwner: [Int]
    /// Per token: the returned rows to add, by their node, in send order.
    let results: TokenTerms

    var count: Int { token.count }
    var assignmentsPerOwner: [Int] { assignmentsPerExpert.map { $0.reduce(0, +) } }

    /// `assignments[e]`: expert e's (token, slot) pairs in token order; experts in contiguous
    /// blocks of `local` per owner.
    init(_ assignments: [[(token: Int, slot: Int)]], tokens n: Int, owners: Int) {
        let local = assignments.count / owners
        let mine = TokenTerms(assignments: assignments, tokens: n)  // each token's experts in order
        var token: [Int] = [], rowsPerOwner = [Int](repeating: 0, count: owners)
        var localExpert: [Int] = [], slot: [Int] = [], firstAssignment = [0]
        var perExpert = [[Int]](repeating: [Int](repeating: 0, count: local), count: owners)
        var partialsPerOwner = [Int](repeating: 0, count: owners)
        var returned = [[(node: Int, row: Int)]](repeating: [], count: n)
        var partial = 0
        // Each token's experts are sorted, so owners take them in turn from a cursor.
        var cursor = Array(mine.first.dropLast())
        for owner in 0..<owners {
            let block = (owner * local)..<((owner + 1) * local), nodes = ExpertSumTree.cover(block)
            for t in 0..<n {
                let start = cursor[t]
                var end = start
                while end < mine.first[t + 1] && mine.node[end] < block.upperBound { end += 1 }
                cursor[t] = end
                if end == start { continue }
                token.append(t)
                rowsPerOwner[owner] += 1
                for i in start..<end {
                    localExpert.append(mine.node[i] - block.lowerBound)
                    slot.append(mine.slot[i])
                    perExpert[owner][mine.node[i] - block.lowerBound] += 1
                }
                firstAssignment.append(slot.count)
                var i = start
                for node in nodes where i < end && node.contains(mine.node[i]) {
                    returned[t].append((node.lowerBound, partial))
                    partial += 1
                    partialsPerOwner[owner] += 1
                    while i < end && node.contains(mine.node[i]) { i += 1 }
                }
            }
        }
        var first = [0], node: [Int] = [], row: [Int] = []
        for list in returned {
            for r in list {
                node.append(r.node)
                row.append(r.row)
            }
            first.append(node.count)
        }
        self.token = token
        self.rowsPerOwner = rowsPerOwner
        self.localExpert = localExpert
        self.slot = slot
        self.firstAssignment = firstAssignment
        assignmentsPerExpert = perExpert
        self.partialsPerOwner = partialsPerOwner
        results = TokenTerms(first: first, node: node, row: row, slot: [Int](repeating: -1, count: node.count))
    }

    /// Row r of `out` ← row token[r] of `x` (rows `width` apart).
    func gather(_ x: UnsafePointer<Float>, width d: Int, into out: UnsafeMutablePointer<Float>) {
        copyRows(x, token, width: d, into: out)
    }

    /// What tells the owners about the rows: per assignment in send order, the token, the
    /// local expert and the routing weight's bits.
    func metadata(weights: UnsafePointer<Float>) -> [Int64] {
        var out = [Int64](repeating: 0, count: Swift.max(3 * slot.count, 1))
        for r in 0..<count {
            for i in firstAssignment[r]..<firstAssignment[r + 1] {
                out[3 * i] = Int64(token[r])
                out[3 * i + 1] = Int64(localExpert[i])
                out[3 * i + 2] = Int64(weights[slot[i]].bitPattern)
            }
        }
        return out
    }
}
