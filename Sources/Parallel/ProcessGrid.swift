import FileSafety
import Collectives
import DeepSeek

/// A parallel layout that cannot run, with what would.
package struct LayoutError: Error, CustomStringConvertible {
    package let description: String
    package init(_ d: String) { description = d }
}

/// The requested layout: world = pp × dp; ep divides dp (experts sharded over the ep ranks of
/// a data-parallel group, dense weights replicated); `microbatches` global micro-batches per
/// optimizer step, split evenly over the dp ranks.
package struct Layout: Sendable, Equatable, CustomStringConvertible {
    package var dp: Int, ep: Int, pp: Int, microbatches: Int
    package init(dp: Int, ep: Int, pp: Int, microbatches: Int) {
        self.dp = dp; self.ep = ep; self.pp = pp; self.microbatches = microbatches
    }
    package var world: Int { dp * pp }
    package var description: String { "(dp \(dp), ep \(ep), pp \(pp))" }

    /// Every reason this layout cannot run `config` on `world` processes with `batch` sequences
    /// per step, each with what would fit; empty when it can.
    package func problems(world n: Int, config c: DeepSeekConfig, batch: Int) -> [String] {
        var p: [String] = []
        if n != dp * pp {
            let fit = n % pp == 0 ? "parallel.dp: \(n / pp) (or launch \(dp * pp) ranks)" : "launch \(dp * pp) ranks, or a pp dividing \(n)"
            p.append("\(n) ranks ≠ pp × dp = \(pp) × \(dp); set \(fit)")
        }
        if dp % ep != 0 { p.append("ep = \(ep) does not divide dp = \(dp); ep must be one of \(divisors(dp))") }
        if c.nRoutedExperts > 0 && c.nRoutedExperts % ep != 0 {
            p.append("ep = \(ep) does not divide the \(c.nRoutedExperts) routed experts; use ep in \(divisors(c.nRoutedExperts).filter { dp % $0 == 0 })")
        }
        // Devices of the balance losses and token dropping are the router's groups: each ep rank
        // must hold whole groups, or those numbers would depend on the layout.
        if c.nRoutedExperts > 0 && ep > 1 && c.nGroup % ep != 0 {
            p.append("ep = \(ep) does not divide n_group = \(c.nGroup) (the devices of the balance losses and token dropping); "
                     + "use ep in \(divisors(c.nGroup).filter { dp % $0 == 0 }) or set model.overrides.n_group to a multiple of \(ep)")
        }
        if c.numHiddenLayers < pp { p.append("pp = \(pp) stages for \(c.numHiddenLayers) layers; pp must be at most \(c.numHiddenLayers)") }
        if microbatches % dp != 0 {
            p.append("parallel.microbatches = \(microbatches) is not divisible by dp = \(dp); use a multiple of \(dp) such as \(dp * max(1, (microbatches + dp - 1) / dp))")
        }
        if batch % microbatches != 0 {
            p.append("batch_size = \(batch) is not divisible by parallel.microbatches = \(microbatches); use one of \(divisors(batch).filter { $0 % dp == 0 })")
        }
        return p
    }

    func divisors(_ n: Int) -> [Int] { n < 1 ? [] : (1...n).filter { n % $0 == 0 } }
}

/// Which layers and parameters a pipeline stage holds: a balanced contiguous split of the
/// decoder layers, the embedding on the first stage, the final norm and head on the last.
package struct StagePartition: Sendable, Equatable {
    package let stages: Int
    package let layers: [Range<Int>]

    package init(layers l: Int, stages pp: Int) {
        stages = pp
        var ranges: [Range<Int>] = [], start = 0
        for s in 0..<pp {
            let n = l / pp + (s < l % pp ? 1 : 0)
            ranges.append(start..<(start + n))
            start += n
        }
        layers = ranges
    }

    /// The stage that owns the parameter named `name` (Hugging Face naming).
    package func stage(of name: String) -> Int {
        if name.hasPrefix("model.embed_tokens") { return 0 }
        if let layer = DeepSeekForCausalLM.layerIndex(of: name) {
            // MTP depths (layers past the decoder) sit with the head, on the last stage.
            return layers.firstIndex { $0.contains(layer) } ?? stages - 1
        }
        return stages - 1  // model.norm, lm_head
    }
}

/// Where the grid puts consecutive positions, and so the ep groups (`parallel.ep_placement`,
/// docs/multinode.md): `withinNodes` numbers the ranks node by node, so an ep group of up to a
/// node's ranks exchanges its tokens over shared memory and its replicas (edp) reduce across
/// the nodes; `acrossNodes` deals the positions out to the nodes in turn, so each ep group
/// spans nodes and each edp group stays within one. Placement moves no number: a layout gives
/// the same bits wherever its ranks run.
package enum EPPlacement: String, Sendable, CaseIterable {
    case withinNodes = "within_nodes"
    case acrossNodes = "across_nodes"

    /// Each rank's grid position, from each rank's (node, local rank).
    func positions(_ nodes: [(node: Int, local: Int)]) -> [Int] {
        let order = nodes.indices.sorted { a, b in
            let x = nodes[a], y = nodes[b]
            return self == .withinNodes ? (x.node, x.local) < (y.node, y.local) : (x.local, x.node) < (y.local, y.node)
        }
        var position = [Int](repeating: 0, count: nodes.count)
        for (p, r) in order.enumerated() { position[r] = p }
        return position
    }
}

/// The process grid, in one place (as Megatron-Core's parallel state): this rank's coordinates
/// and the communicators of its groups. `world` numbers the ranks by grid position (`EPPlacement`;
/// mpirun's numbering when that already is it). Position = stage · dp + d; within a stage, the
/// ep group of d is the ep consecutive positions holding d, and the expert-data-parallel group
/// of d the ranks with the same position in their ep groups (the replicas of the same experts).
package final class ProcessGrid: @unchecked Sendable {
    package let layout: Layout
    package let world: Communicator
    /// Same stage: the data-parallel replicas of this stage's dense weights.
    package let dp: Communicator
    /// Same stage and ep group: the ranks that exchange tokens.
    package let ep: Communicator
    /// Same stage and ep position: the replicas of this rank's experts.
    package let edp: Communicator
    package let stage: Int
    package let dpRank: Int
    package let partition: StagePartition
    /// The nodes the dp, ep and edp groups span (`Communicator.nodeCount`; the most over the
    /// job's groups of each kind is what the log reports): communication within one node is
    /// shared memory, between nodes a network (docs/multinode.md).
    package let dpNodes: Int, epNodes: Int, edpNodes: Int
    /// The node of each rank of this rank's ep group, by ep rank (nodes numbered by their
    /// lowest rank): what the expert exchange counts its bytes between nodes by.
    package let epNodeOf: [Int]

    package init(layout: Layout, world mpiWorld: Communicator, layers: Int, placement: EPPlacement = .withinNodes) throws {
        precondition(mpiWorld.size == layout.world)
        self.layout = layout
        let positions = mpiWorld.size > 1 ? placement.positions(try mpiWorld.nodes()) : [0]
        // Every rank sees the same permutation: all renumber, or none.
        let world = positions == Array(positions.indices) ? mpiWorld : try mpiWorld.renumbered(position: positions[mpiWorld.rank])
        self.world = world
        stage = world.rank / layout.dp
        dpRank = world.rank % layout.dp
        partition = StagePartition(layers: layers, stages: layout.pp)
        dp = try world.split(color: stage, key: dpRank)
        ep = try world.split(color: stage * layout.dp + dpRank / layout.ep, key: dpRank % layout.ep)
        edp = try world.split(color: stage * layout.ep + dpRank % layout.ep, key: dpRank / layout.ep)
        dpNodes = try dp.nodeCount()
        epNodes = try ep.nodeCount()
        edpNodes = try edp.nodeCount()
        epNodeOf = try ep.nodes().map(\.node)
    }

    /// The nodes each router group's experts live on, for `experts` in `groups` groups split in
    /// contiguous blocks over an ep group whose ranks are on `nodeOf`: what V2's device-limited
    /// and V3's node-limited routing bound, `topk_group` groups a token, maps to ranks and nodes.
    package static func groupNodes(experts: Int, groups: Int, nodeOf: [Int]) -> [[Int]] {
        let perGroup = experts / Swift.max(groups, 1), perRank = experts / Swift.max(nodeOf.count, 1)
        return (0..<groups).map { g in Array(Set((g * perGroup..<(g + 1) * perGroup).map { nodeOf[$0 / perRank] })).sorted() }
    }

    package var isFirstStage: Bool { stage == 0 }
    package var isLastStage: Bool { stage == layout.pp - 1 }
    package var epRank: Int { dpRank % layout.ep }
    /// World rank of the same dp position in another stage.
    package func worldRank(stage s: Int) -> Int { s * layout.dp + dpRank }
    /// Global micro-batches this rank's data-parallel position processes.
    package var micros: Range<Int> {
        let n = layout.microbatches / layout.dp
        return (dpRank * n)..<((dpRank + 1) * n)
    }
    package var layers: Range<Int> { partition.layers[stage] }

    /// Whether this rank keeps parameter `name` of a model with `experts` routed experts: its
    /// stage's parameters, of the routed experts only its ep block's. What a rank builds,
    /// initialises and loads; the rest of the model is never touched there.
    package func holds(experts: Int) -> (String) -> Bool {
        ProcessGrid.holds(partition: partition, stage: stage, block: epRank, ep: layout.ep, experts: experts)
    }

    /// `holds` of the rank at (stage, ep block) of a layout.
    package static func holds(partition: StagePartition, stage: Int, block: Int, ep: Int, experts: Int) -> (String) -> Bool {
        let per = Swift.max(experts / ep, 1)
        return { name in
            guard partition.stage(of: name) == stage else { return false }
            return FlatLayout.expert(of: name).map { $0.index / per == block } ?? true
        }
    }
}

extension LayoutError: InputError {}
