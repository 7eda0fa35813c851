import Autograd
import DeepSeek

/// A source's side of an MoE layer's exchange: one row a (token, node) — a token's input
/// crosses to each node holding one of its experts once, to that node's gateway (`Gateways`),
/// however many experts and ranks it uses there (DeepSeek-V3 §3.2.2) — in send order, gateway
/// rank then token; each row's assignments (expert, routing-weight slot) in expert order; and
/// what comes back: one row per (token, node, `ExpertSumTree` node of the node's experts the
/// token uses), which the source adds with the tree.
struct TokenRows {
    /// Per row, in send order: the token.
    let token: [Int]
    let rowsPerGateway: [Int]
    /// Per assignment, in send order (row, then expert): the expert and the routing weight's slot.
    let expert: [Int], slot: [Int]
    /// Row r's assignments are firstAssignment[r] ..< firstAssignment[r + 1].
    let firstAssignment: [Int]
    let assignmentsPerGateway: [Int]
    /// [rank][local expert]: the assignments for each rank's experts (its header's counts).
    let assignmentsPerExpert: [[Int]]
    /// The rows each gateway returns, and per token the returned rows to add, by tree node.
    let partialsPerGateway: [Int]
    let results: TokenTerms

    var count: Int { token.count }

    /// `assignments[e]`: expert e's (token, slot) pairs in token order. `me`: this rank.
    init(_ assignments: [[(token: Int, slot: Int)]], tokens n: Int, gateways: Gateways, me: Int) {
        let size = gateways.size, local = gateways.local
        let mine = TokenTerms(assignments: assignments, tokens: n)  // each token's experts in order
        var token: [Int] = [], rowsPerGateway = [Int](repeating: 0, count: size)
        var expert: [Int] = [], slot: [Int] = [], firstAssignment = [0]
        var perGateway = [Int](repeating: 0, count: size), partialsPerGateway = [Int](repeating: 0, count: size)
        var perExpert = [[Int]](repeating: [Int](repeating: 0, count: local), count: size)
        var returned = [[(node: Int, row: Int)]](repeating: [], count: n)
        var partial = 0, here: [Int] = []
        for g in 0..<size {
            let node = gateways.nodeOf[g]
            guard gateways.gateway(source: me, node: node) == g else { continue }
            let nodes = gateways.treeNodes(ofNode: node)
            for t in 0..<n {
                here.removeAll(keepingCapacity: true)
                for i in mine.first[t]..<mine.first[t + 1] where gateways.nodeOf[mine.node[i] / local] == node { here.append(i) }
                if here.isEmpty { continue }
                token.append(t)
                rowsPerGateway[g] += 1
                for i in here {
                    expert.append(mine.node[i])
                    slot.append(mine.slot[i])
                    perExpert[mine.node[i] / local][mine.node[i] % local] += 1
                }
                perGateway[g] += here.count
                firstAssignment.append(slot.count)
                for tree in nodes where here.contains(where: { tree.contains(mine.node[$0]) }) {
                    returned[t].append((tree.lowerBound, partial))
                    partial += 1
                    partialsPerGateway[g] += 1
                }
            }
        }
        // A token's returned rows, by node of the tree (gateways' nodes interleave in rank order).
        var first = [0], node: [Int] = [], row: [Int] = []
        for list in returned {
            for r in list.sorted(by: { $0.node < $1.node }) {
                node.append(r.node)
                row.append(r.row)
            }
            first.append(node.count)
        }
        self.token = token
        self.rowsPerGateway = rowsPerGateway
        self.expert = expert
        self.slot = slot
        self.firstAssignment = firstAssignment
        assignmentsPerGateway = perGateway
        assignmentsPerExpert = perExpert
        self.partialsPerGateway = partialsPerGateway
        results = TokenTerms(first: first, node: node, row: row, slot: [Int](repeating: -1, count: node.count))
    }

    /// Row r of `out` ← row token[r] of `x` (rows `width` apart).
    func gather(_ x: UnsafePointer<Float>, width d: Int, into out: UnsafeMutablePointer<Float>) {
        copyRows(x, token, width: d, into: out)
    }

    /// What tells the gateways about the rows: per assignment in send order, the token, the
    /// expert and the routing weight's bits.
    func metadata(weights: UnsafePointer<Float>) -> [Int64] {
        var out = [Int64](repeating: 0, count: Swift.max(3 * slot.count, 1))
        for r in 0..<count {
            for i in firstAssignment[r]..<firstAssignment[r + 1] {
                out[3 * i] = Int64(token[r])
                out[3 * i + 1] = Int64(expert[i])
                out[3 * i + 2] = Int64(weights[slot[i]].bitPattern)
            }
        }
        return out
    }
}
