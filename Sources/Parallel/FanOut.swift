import Autograd
import DeepSeek

/// An owner's side of an MoE layer's exchange: the rows it received — one a (source, token) —
/// fanned out to its local experts in the layout the expert kernels read (source, then local
/// expert, then token: one source's rows for one expert are contiguous), and its experts'
/// results added back per (row, `ExpertSumTree` node of its block) for the return.
struct FanOut {
    /// Per fanned-out row: the received row it copies, and that row's token at its source.
    let receivedRow: [Int]
    let tokens: [Int64]
    /// Per assignment, in arrival order (source, row, expert): its received row, its fanned-out
    /// row, and its routing weight.
    let assignmentRow: [Int], fannedRow: [Int]
    let weights: [Float]
    /// Per returned row (source, row, node): the assignments it adds, with their weights'
    /// indices; and how many rows go back to each source.
    let results: TokenTerms
    let resultsPerSource: [Int]

    var rows: Int { receivedRow.count }

    /// From what the sources described (`TokenRows.metadata`, in source order, `assignments[s]`
    /// each): rows are runs of one token; `segmentStarts[s][j]` is where source s's rows for
    /// local expert j begin when fanned out. `block`: the owner's experts.
    init(metadata: [Int64], assignments: [Int], rowsPerSource: [Int], segmentStarts: [[Int]], segmentRows: [[Int]],
         block: Range<Int>) throws {
        let nodes = ExpertSumTree.cover(block)
        guard metadata.count >= 3 * assignments.reduce(0, +) else { throw FanOutError.malformed(source: 0) }
        let total = assignments.reduce(0, +)
        var receivedRow = [Int](repeating: 0, count: total), tokens = [Int64](repeating: 0, count: receivedRow.count)
        var assignmentRow: [Int] = [], fannedRow: [Int] = [], weights: [Float] = []
        var first: [Int] = [], node: [Int] = [], termRow: [Int] = [], slot: [Int] = []
        var resultsPerSource = [Int](repeating: 0, count: assignments.count)
        var a = 0, row = -1
        for (source, count) in assignments.enumerated() {
            var next = segmentStarts[source]
            var rowsHere = 0, lastNode = -1
            for i in a..<(a + count) {
                let token = metadata[3 * i], expert = Int(metadata[3 * i + 1])
                let newRow = i == a || token != metadata[3 * (i - 1)]
                guard expert >= 0 && expert < block.count, newRow || expert > Int(metadata[3 * (i - 1) + 1]),
                      next[expert] < segmentStarts[source][expert] + segmentRows[source][expert] else {
                    throw FanOutError.malformed(source: source)
                }
                if newRow {
                    row += 1
                    rowsHere += 1
                    lastNode = -1
                }
                let fanned = next[expert]
                next[expert] += 1
                receivedRow[fanned] = row
                tokens[fanned] = token
                assignmentRow.append(row)
                fannedRow.append(fanned)
                weights.append(Float(bitPattern: UInt32(truncatingIfNeeded: metadata[3 * i + 2])))
                // A new returned row where the assignment enters another node of the block.
                let n = nodes.firstIndex { $0.contains(block.lowerBound + expert) }!
                if n != lastNode {
                    first.append(node.count)
                    lastNode = n
                    resultsPerSource[source] += 1
                }
                node.append(block.lowerBound + expert)
                termRow.append(fanned)
                slot.append(assignmentRow.count - 1)
            }
            guard rowsHere == rowsPerSource[source] else { throw FanOutError.malformed(source: source) }
            a += count
        }
        first.append(node.count)
        self.receivedRow = receivedRow
        self.tokens = tokens
        self.assignmentRow = assignmentRow
        self.fannedRow = fannedRow
        self.weights = weights
        results = TokenTerms(first: first, node: node, row: termRow, slot: slot)
        self.resultsPerSource = resultsPerSource
    }

    /// Row i of `out` ← received row receivedRow[i].
    func fan(_ received: UnsafePointer<Float>, width d: Int, into out: UnsafeMutablePointer<Float>) {
        copyRows(received, receivedRow, width: d, into: out)
    }
}

/// A source's description of its rows that contradicts its header: the exchange is out of step.
enum FanOutError: Error, CustomStringConvertible {
    case malformed(source: Int)

    var description: String {
        switch self {
        case .malformed(let source): "ep rank \(source) described its rows inconsistently with its header"
        }
    }
}
