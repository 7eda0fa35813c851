import Foundation
import Autograd
import Collectives
import DeepSeek
import Parallel
import BLASKernel
import FileFormats

/// `deeptrain bench dispatch` (under mpirun, one ep group over all ranks): the bytes one MoE
/// layer's expert exchange sends between nodes per token, forward and backward, phase by
/// phase, against the bound of node-limited routing — M nodes a token, M·hidden values each
/// way — and against what one row per (token, expert) would send. Counts, not times: the
/// figures are the same on any machine with the same layout.
package enum DispatchBenchmark {
    /// Per token and MoE layer, averaged over every rank's tokens.
    package struct PerToken: Codable, Sendable {
        package let interNodeBytes: [String: Double]
        package let interNodeRows: [String: Double]
        package let intraNodeBytes: [String: Double]
        /// Rows a token's input would cross to other nodes with one row per (token, expert).
        package let perExpertRows: Double
        /// Nodes other than its own a token's experts are on.
        package let remoteNodes: Double

        enum CodingKeys: String, CodingKey {
            case interNodeBytes = "inter_node_bytes"
            case interNodeRows = "inter_node_rows"
            case intraNodeBytes = "intra_node_bytes"
            case perExpertRows = "per_expert_rows"
            case remoteNodes = "remote_nodes"
        }
    }

    package struct Report: Codable, Sendable {
        package var benchmark = "dispatch"
        package var blasKernel = dt_kernel_state_read().kernelName
        package let model: String
        package let ranks: Int, nodes: Int
        package let experts: Int, expertsPerToken: Int, groups: Int
        /// Groups (M) a token's experts may come from; nil: any expert (no limit).
        package let topkGroup: Int?
        /// Each router group's nodes (the limit bounds nodes when each group has one).
        package let groupNodes: [[Int]]
        package let hidden: Int
        package let tokensPerRank: Int
        package let commDType: String
        package let steps: Int
        package let perToken: PerToken
        /// M · hidden · bytes per value: the most a token's rows may carry between nodes each
        /// way under the limit (headers and metadata apart).
        package let boundBytes: Int?

        enum CodingKeys: String, CodingKey {
            case benchmark, model, ranks, nodes, experts, groups, hidden, steps
            case blasKernel = "blas_kernel"
            case expertsPerToken = "experts_per_token"
            case topkGroup = "topk_group"
            case groupNodes = "group_nodes"
            case tokensPerRank = "tokens_per_rank"
            case commDType = "comm_dtype"
            case perToken = "per_token_layer"
            case boundBytes = "bound_bytes"
        }
    }

    /// Runs on every rank of `world`; the report on rank 0 (nil elsewhere). `limit`: the
    /// routing's group limit (nil: greedy top-K over all experts).
    package static func run(world: Communicator, model name: String, config base: DeepSeekConfig, tokens: Int, steps: Int,
                            limit: Int?, commDType: CommDType) throws -> Report? {
        var c = base
        if let limit {
            c.topkGroup = limit
            if c.topkMethod == .greedy { c.topkMethod = .groupLimitedGreedy }
        } else {
            c.topkMethod = .greedy
        }
        let nodeOf = try world.nodes().map(\.node)
        let model = DeepSeekForCausalLM(c, seed: 1, positions: 16)
        guard let layer = model.model.layers.firstIndex(where: { $0.moe != nil }), let moe = model.model.layers[layer].moe else {
            throw ConfigError(source: "model", key: "first_k_dense_replace", "the model has no MoE layer")
        }
        let local = c.nRoutedExperts / world.size
        let ep = ExpertParallel(comm: world, experts: c.nRoutedExperts, layerOffset: [layer: 0],
                                flatCount: local * 3 * c.moeIntermediateSize * c.hiddenSize, dtype: commDType, nodes: nodeOf)
        var perExpertRows = 0, remoteNodes = 0
        for step in 0..<steps {
            ep.resetStep()
            let x = Tensor.randn([1, tokens, c.hiddenSize], std: 1, rng: Philox(seed: 11, purpose: "bench-dispatch", UInt64(world.rank), UInt64(step)), requiresGrad: true)
            var training = MoETraining(alphas: .init(expert: 0, device: 0, communication: 0), dropping: nil, seed: 1, step: step)
            training.layer = layer
            training.executor = ep
            let (y, report) = moe(x, training: training)
            (y * y).sum().backward()
            try ep.throwIfFailed()
            for t in 0..<tokens {
                let owners = report.routing.experts[(t * c.numExpertsPerTok)..<((t + 1) * c.numExpertsPerTok)].map { $0 / local }
                perExpertRows += owners.filter { nodeOf[$0] != nodeOf[world.rank] }.count
                remoteNodes += Set(owners.map { nodeOf[$0] }).subtracting([nodeOf[world.rank]]).count
            }
        }
        let traffic = ep.traffic
        let phases = ExchangePhase.allCases
        var sums = phases.map { Double(traffic.interNodeBytes[$0] ?? 0) } + phases.map { Double(traffic.interNodeRows[$0] ?? 0) }
            + phases.map { Double(traffic.intraNodeBytes[$0] ?? 0) } + [Double(perExpertRows), Double(remoteNodes), Double(traffic.tokens)]
        try world.allreduceSum(&sums)
        guard world.rank == 0 else { return nil }
        let n = phases.count, all = sums[3 * n + 2]
        func table(_ k: Int) -> [String: Double] {
            Dictionary(uniqueKeysWithValues: phases.enumerated().map { ($0.element.rawValue, sums[k * n + $0.offset] / all) })
        }
        let groupNodes = ProcessGrid.groupNodes(experts: c.nRoutedExperts, groups: c.nGroup, nodeOf: nodeOf)
        return Report(model: name, ranks: world.size, nodes: Set(nodeOf).count, experts: c.nRoutedExperts,
                      expertsPerToken: c.numExpertsPerTok, groups: c.nGroup, topkGroup: limit, groupNodes: groupNodes,
                      hidden: c.hiddenSize, tokensPerRank: tokens, commDType: commDType.rawValue, steps: steps,
                      perToken: PerToken(interNodeBytes: table(0), interNodeRows: table(1), intraNodeBytes: table(2),
                                         perExpertRows: sums[3 * n] / all, remoteNodes: sums[3 * n + 1] / all),
                      boundBytes: limit.map { $0 * c.hiddenSize * commDType.bytes })
    }
}
