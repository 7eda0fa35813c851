import ArgumentParser
import Foundation
import FileSafety
import DeepSeek
import Parallel
import Training

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Parameters, FLOPs per token, KV cache per token and memory per rank of a model and layout.")

    @Option(help: "A preset (tiny, tiny-v3, small, v2-lite, v2, v3) or a path to a Hugging Face config.json.") var model: String?
    @Option(help: "A recipe: its model, parallel layout, sequence length and micro-batches.") var recipe: String?
    @Option(name: .customLong("set"), help: "With --recipe: override a recipe key, as for train (repeatable).") var overrides: [String] = []
    @Option(help: "Data-parallel ranks (with --recipe: overrides the recipe's).") var dp: Int?
    @Option(help: "Expert-parallel ranks, dividing dp (with --recipe: overrides the recipe's).") var ep: Int?
    @Option(help: "Pipeline stages (with --recipe: overrides the recipe's).") var pp: Int?
    @Option(help: "Sequence length for FLOPs and traffic (default: the model's original context, at most 4096).") var seq: Int?
    @Option(help: "Sequences per micro-batch (with --recipe: the stage's batch_size / parallel.microbatches).") var microBatch = 1
    @Option(help: "Micro-batches per step, over all ranks (with --recipe: parallel.microbatches).") var microbatches = 1
    @Option(help: "With --recipe: the stage (index) whose batch and sequence length to plan for.") var stage = 0
    @Flag(help: "Print JSON instead of a table.") var json = false

    mutating func run() throws {
        let config: DeepSeekConfig
        var label = model ?? ""
        if let recipe {
            let r = try Recipe.load(recipe, overrides: overrides)
            config = try r.model.config(relativeTo: (recipe as NSString).deletingLastPathComponent)
            let stages = pp ?? r.parallel.pp
            let e = ep ?? r.parallel.ep
            // A recipe's dp of 0 means world / pp, which only mpirun knows: plan for the
            // smallest data-parallel size its ep allows unless --dp says otherwise.
            (dp, ep, pp, microbatches) = (dp ?? (r.parallel.dp > 0 ? r.parallel.dp : e), e, stages, r.parallel.microbatches)
            guard r.stages.indices.contains(stage) else {
                throw ValidationError("--stage \(stage): the recipe has stages 0..<\(r.stages.count)")
            }
            let s = r.stages[stage]
            seq = seq ?? s.seqLen
            microBatch = Swift.max(1, s.batchSize / Swift.max(microbatches, 1))
            label = "\(r.model.source) (recipe \(r.name))"
        } else if !overrides.isEmpty {
            throw ValidationError("--set overrides a recipe key: give --recipe RECIPE.yaml")
        } else if let model {
            config = model.hasSuffix(".json") ? try DeepSeekConfig.load(model) : try DeepSeekConfig.preset(model)
        } else {
            throw ValidationError("give --model PRESET|config.json or --recipe RECIPE.yaml")
        }
        let (dp, ep, pp) = (self.dp ?? 1, self.ep ?? 1, self.pp ?? 1)
        guard dp >= 1, ep >= 1, pp >= 1, dp % ep == 0 else {
            throw ValidationError("--dp, --ep, --pp must be positive and --ep must divide --dp (got dp \(dp), ep \(ep))")
        }
        guard config.nRoutedExperts == 0 || config.nRoutedExperts % ep == 0 else {
            throw ValidationError("--ep \(ep) does not divide the \(config.nRoutedExperts) routed experts")
        }
        guard pp <= config.numHiddenLayers else {
            throw ValidationError("--pp \(pp) is more stages than the \(config.numHiddenLayers) layers")
        }
        let t = seq ?? Swift.min(config.ropeScaling?.originalMaxPositionEmbeddings ?? config.maxPositionEmbeddings, 4096)
        let p = ModelPlan(config, sequenceLength: t, dp: dp, ep: ep, pp: pp, microBatch: microBatch, microbatches: microbatches)
        let memory = MemoryPlan(config, layout: Layout(dp: dp, ep: ep, pp: pp, microbatches: microbatches), rows: microBatch, length: t)
        if json {
            print(jsonString(PlanReport(plan: p, memory: memory)))
            return
        }
        func b(_ n: Int) -> String { String(format: "%.2fB", Double(n) / 1e9) }
        func gib(_ x: Double) -> String { String(format: "%.2f GiB", x / 1_073_741_824) }
        let stageLines = memory.ranks.map { r in
            "    stage \(r.stage) (layers \(r.layers.first ?? 0)-\(r.layers.last ?? 0)) \(gib(r.totalBytes)): weights \(gib(r.weightsBytes)), "
                + "gradients \(gib(r.gradientsBytes)), AdamW (ZeRO-1) \(gib(r.optimizerBytes)), activations \(gib(r.activationsBytes)), "
                + "communication buffers \(gib(r.communicationBytes)), runtime \(gib(r.runtimeBytes))"
        }.joined(separator: "\n")
        print("""
        model \(label): \(config.numHiddenLayers) layers, hidden \(config.hiddenSize), \(config.numAttentionHeads) heads, \
        \(config.nSharedExperts) shared + \(config.nRoutedExperts) routed experts (top-\(config.numExpertsPerTok))
          parameters            \(b(p.totalParameters)) total, \(b(p.activatedParameters)) activated per token (embedding excluded)\
        \(p.mtpParameters > 0 ? ", plus \(b(p.mtpParameters)) in \(config.numNextnPredictLayers) MTP depth\(config.numNextnPredictLayers == 1 ? "" : "s")" : "")
          FLOPs per token       \(String(format: "%.3g", p.flopsPerToken)) (training, sequence length \(t))
          KV cache per token    \(p.kvCacheValuesPerTokenPerLayer) values per layer (kv_lora + qk_rope): \
        \(p.kvCacheBytesPerTokenBF16) bytes in bf16, against \(p.mhaCacheBytesPerTokenBF16) for standard MHA \
        (\(String(format: "%.1f", Double(p.mhaCacheBytesPerTokenBF16) / Double(p.kvCacheBytesPerTokenBF16)))× smaller)
          layout                dp \(dp) × pp \(pp) = \(dp * pp) ranks, ep \(ep) inside dp
          memory per rank       \(gib(memory.peakBytes)) at the peak of a training step (measured: rank_peak_rss_mb in metrics.jsonl)
        \(stageLines)
          all-to-all per step   \(gib(p.allToAllBytesPerStepPerRank)) per rank (\(microBatch) sequences × \(Swift.max(microbatches / dp, 1)) micro-batches)
        """)
    }
}

/// `plan --json`: the model's figures and, under `memory_per_rank`, the rank's peak memory.
struct PlanReport: Encodable {
    let plan: ModelPlan
    let memory: MemoryPlan
    enum Keys: String, CodingKey { case memory_per_rank }
    func encode(to encoder: Encoder) throws {
        try plan.encode(to: encoder)
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(memory, forKey: .memory_per_rank)
    }
}
