import DeepSeek

/// Which rank of an ep group forwards a source's rows on each node (DeepSeek-V3 §3.2.2): a
/// token crosses to a node once, to the rank there with the source's own place on its node
/// (modulo the node's ranks), which fans it out to the experts' owners over shared memory. A
/// source's gateway on its own node is itself.
struct Gateways {
    /// Each ep rank's node, and each node's ep ranks in rank order.
    let nodeOf: [Int]
    let ranksOn: [Int: [Int]]
    /// Routed experts a rank holds (contiguous blocks in rank order).
    let local: Int

    init(nodeOf: [Int], local: Int) {
        self.nodeOf = nodeOf
        self.local = local
        ranksOn = Dictionary(grouping: nodeOf.indices, by: { nodeOf[$0] })
    }

    var size: Int { nodeOf.count }

    /// The rank that forwards source `s`'s rows on node `n`.
    func gateway(source s: Int, node n: Int) -> Int {
        let place = ranksOn[nodeOf[s]]!.firstIndex(of: s)!, there = ranksOn[n]!
        return there[place % there.count]
    }

    /// The sources whose rows rank `g` forwards on its node, in rank order.
    func sources(forwardedBy g: Int) -> [Int] {
        (0..<size).filter { gateway(source: $0, node: nodeOf[g]) == g }
    }

    /// Node `n`'s experts as aligned nodes of the expert-sum tree: each maximal run of its
    /// ranks' blocks tiled by `ExpertSumTree.cover`.
    func treeNodes(ofNode n: Int) -> [Range<Int>] {
        var runs: [Range<Int>] = []
        for r in ranksOn[n]! {
            let block = (r * local)..<((r + 1) * local)
            if let last = runs.last, last.upperBound == block.lowerBound { runs[runs.count - 1] = last.lowerBound..<block.upperBound }
            else { runs.append(block) }
        }
        return runs.flatMap { ExpertSumTree.cover($0) }
    }
}
