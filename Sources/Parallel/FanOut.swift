import Autograd
import DeepSeek

/// A gateway's side of an MoE layer's exchange: the rows it received — one a (source, token)
/// from the sources it forwards for (`Gateways`) — fanned out to the experts of its node in the
/// layout their owners expect (owner, then source, then local expert, then token: one
/// source's rows for one expert contiguous), and the experts' results added back per (row,
/// `ExpertSumTree` node of the node's experts) for the return.
struct FanOut {
    /// Per fanned-out row: the received row it copies, and that row's token at its source.
    let receivedRow: [Int]
    let tokens: [Int64]
    /// Fanned-out rows for each rank (its owners on this node), in rank order.
    let countsPerOwner: [Int]
    /// Per assignment, in arrival order (source, row, expert): its received row, its fanned-out
    /// row, and its routing weight.
    let assignmentRow: [Int], fannedRow: [Int]
    let weights: [Float]
    /// Per returned row (source, row, tree node): the assignments it adds, with their weights'
    /// indices; and how many rows go back to each source.
    let results: TokenTerms
    let resultsPerSource: [Int]

    var rows: Int { receivedRow.count }

    /// From what the sources described (`TokenRows.metadata`, in source order, `assignments[s]`
    /// each, in `rowsPerSource[s]` rows). `me`: this rank, the gateway.
    init(metadata: [Int64], assignments: [Int], rowsPerSource: [Int], gateways: Gateways, me: Int) throws {
        let local = gateways.local, size = gateways.size, node = gateways.nodeOf[me]
        let total = assignments.reduce(0, +), trees = gateways.treeNodes(ofNode: node)
        guard metadata.count >= 3 * total else { throw FanOutError.inconsistent(phase: ExchangePhase.metadata.rawValue) }
        var (next, countsPerOwner) = try Self.runStarts(metadata, assignments: assignments, gateways: gateways, node: node)
        var receivedRow = [Int](repeating: 0, count: total), tokens = [Int64](repeating: 0, count: total)
        var assignmentRow: [Int] = [], fannedRow: [Int] = [], weights: [Float] = []
        var first: [Int] = [], termNode: [Int] = [], termRow: [Int] = [], termSlot: [Int] = []
        var resultsPerSource = [Int](repeating: 0, count: size)
        var row = -1, a = 0
        for (source, n) in assignments.enumerated() {
            var rowsHere = 0, lastTree = -1
            for i in a..<(a + n) {
                let token = metadata[3 * i], e = Int(metadata[3 * i + 1])
                let newRow = i == a || token != metadata[3 * (i - 1)]
                guard newRow || e > Int(metadata[3 * (i - 1) + 1]) else { throw FanOutError.malformed(source: source) }
                if newRow {
                    row += 1
                    rowsHere += 1
                    lastTree = -1
                }
                let fanned = next[e / local][source][e % local]
                next[e / local][source][e % local] += 1
                receivedRow[fanned] = row
                tokens[fanned] = token
                assignmentRow.append(row)
                fannedRow.append(fanned)
                weights.append(Float(bitPattern: UInt32(truncatingIfNeeded: metadata[3 * i + 2])))
                // A new returned row where the assignment enters another node of the tree.
                let tree = trees.firstIndex { $0.contains(e) }!
                if tree != lastTree {
                    first.append(termNode.count)
                    lastTree = tree
                    resultsPerSource[source] += 1
                }
                termNode.append(e)
                termRow.append(fanned)
                termSlot.append(assignmentRow.count - 1)
            }
            guard rowsHere == rowsPerSource[source] else { throw FanOutError.malformed(source: source) }
            a += n
        }
        first.append(termNode.count)
        self.receivedRow = receivedRow
        self.tokens = tokens
        self.countsPerOwner = countsPerOwner
        self.assignmentRow = assignmentRow
        self.fannedRow = fannedRow
        self.weights = weights
        results = TokenTerms(first: first, node: termNode, row: termRow, slot: termSlot)
        self.resultsPerSource = resultsPerSource
    }

    /// Where each (owner, source, local expert) run starts among the fanned-out rows — owners on
    /// `node` in rank order, then sources, then local experts — and the rows for each owner.
    static func runStarts(_ metadata: [Int64], assignments: [Int], gateways: Gateways, node: Int) throws -> ([[[Int]]], [Int]) {
        let local = gateways.local, size = gateways.size
        var count = [[[Int]]](repeating: [[Int]](repeating: [Int](repeating: 0, count: local), count: size), count: size)
        var a = 0
        for (source, n) in assignments.enumerated() {
            for i in a..<(a + n) {
                let e = Int(metadata[3 * i + 1])
                guard e >= 0, e < size * local, gateways.nodeOf[e / local] == node else { throw FanOutError.malformed(source: source) }
                count[e / local][source][e % local] += 1
            }
            a += n
        }
        var starts = count, at = 0, perOwner = [Int](repeating: 0, count: size)
        for owner in gateways.ranksOn[node]! {
            let before = at
            for source in 0..<size {
                for j in 0..<local {
                    starts[owner][source][j] = at
                    at += count[owner][source][j]
                }
            }
            perOwner[owner] = at - before
        }
        return (starts, perOwner)
    }

    /// Row i of `out` ← received row receivedRow[i].
    func fan(_ received: UnsafePointer<Float>, width d: Int, into out: UnsafeMutablePointer<Float>) {
        copyRows(received, receivedRow, width: d, into: out)
    }
}

/// A source's description of its rows that contradicts its header: the exchange is out of step.
enum FanOutError: Error, CustomStringConvertible {
    case malformed(source: Int)
    /// What a rank sends itself is not what it expects from itself.
    case inconsistent(phase: String)

    var description: String {
        switch self {
        case .malformed(let source): "ep rank \(source) described its rows inconsistently with its header"
        case .inconsistent(let phase): "the expert exchange's \(phase) counts disagree with the plan"
        }
    }
}
