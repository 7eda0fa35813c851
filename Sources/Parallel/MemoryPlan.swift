import Autograd
import DeepSeek
import NN
import Collectives

/// The peak memory of one rank of a layout, from the config and the buffers the trainer makes:
/// what `deeptrain plan` prints per rank. Every term names the allocation it stands for, so a
/// change to the trainer that moves the peak shows here (the ratio test and the table in
/// docs/parallelism.md hold it to the measured peak RSS).
///
/// Phases of a step on a rank (GridTrainer.step): the forward/backward of its micro-batches
/// (activations of those in flight, plus the experts' kept rows), then the experts' weight
/// gradients (one full vector of the rank's experts), then the reduce-scatters (a full vector and
/// its reduced shard; a window per rank at a time through the reduce-scatter's buffer, which
/// stays resident), then AdamW and the allgather of values (tensor to tensor: no buffer). Freed activation
/// blocks stay in the buffer pool for the next step, so the activation peak is resident in every
/// phase, and the peak is the sum of the persistent terms, the activations and the largest
/// gradient phase.
package struct MemoryPlan: Codable, Sendable {
    package struct Rank: Codable, Sendable {
        package let stage: Int
        package let layers: [Int]
        package let parametersOnRank: Int
        package let weightsBytes: Double
        /// The dense parameters' autograd gradients plus the largest gradient phase.
        package let gradientsBytes: Double
        /// AdamW's two moments of this rank's ZeRO-1 shards.
        package let optimizerBytes: Double
        /// One micro-batch's tape times the micro-batches in flight (1F1B), the experts' kept
        /// rows of the whole step and their cached activations.
        package let activationsBytes: Double
        /// Pipeline sends and receives in flight, and the reduce-scatter's receive buffer.
        package let communicationBytes: Double
        /// The process without a model: Swift runtime, MPI, OpenBLAS (measured, see `runtimeBytes`).
        package let runtimeBytes: Double
        package let totalBytes: Double

        enum CodingKeys: String, CodingKey {
            case stage
            case layers
            case parametersOnRank = "parameters_on_rank"
            case weightsBytes = "weights_bytes"
            case gradientsBytes = "gradients_bytes"
            case optimizerBytes = "optimizer_bytes"
            case activationsBytes = "activations_bytes"
            case communicationBytes = "communication_bytes"
            case runtimeBytes = "runtime_bytes"
            case totalBytes = "total_bytes"
        }
    }

    /// One entry per pipeline stage: the ranks of a stage hold the same (ep blocks are equal).
    package let ranks: [Rank]
    /// The largest rank's total.
    package let peakBytes: Double

    /// Resident memory of `deeptrain train` before it builds a model: 39 MB alone, 44-45 MB per
    /// rank under mpirun (tiny preset, 1 step of 1 × 8 tokens, VmHWM; docs/parallelism.md).
    package static func runtimeBytes(world: Int) -> Double { world > 1 ? 45 * 1_048_576 : 39 * 1_048_576 }

    /// `rows` sequences of `length` tokens per micro-batch; `layout.microbatches` over all ranks.
    package init(_ c: DeepSeekConfig, layout: Layout, rows: Int, length t: Int) {
        let partition = StagePartition(layers: c.numHiddenLayers, stages: layout.pp)
        let shapes = DeepSeekForCausalLM.parameterShapes(c)
        let (dp, ep, pp) = (layout.dp, layout.ep, layout.pp)
        let edp = Swift.max(dp / ep, 1)
        let micros = Swift.max(layout.microbatches / dp, 1)
        let tokens = rows * t
        var out: [Rank] = []
        for s in 0..<pp {
            let holds = ProcessGrid.holds(partition: partition, stage: s, block: 0, ep: ep, experts: c.nRoutedExperts)
            var dense = 0, expert = 0
            for (name, shape) in shapes where holds(name) {
                let n = shape.reduce(1, *)
                if FlatLayout.expert(of: name) != nil { expert += n } else { dense += n }
            }
            let layers = Array(partition.layers[s])
            let (pd, pe) = (Double(dense), Double(expert))
            let weights = 4 * (pd + pe)
            let moments = 8 * ((pd / Double(dp)).rounded(.up) + (pe / Double(edp)).rounded(.up))

            // Gradients: the dense parameters' own (.grad) and the rank's reduced shards (kept
            // from step to step) all step; the canonical sum's partial sums during the backward
            // (one packed copy per pending tree level, plus the leaf being pushed), then the
            // full vectors being reduce-scattered.
            let levels = (0..<micros).map { ($0).nonzeroBitCount + 1 }.max() ?? 1
            let backwardPhase = 4 * pd * Double(levels + (micros > 1 ? 1 : 0))
            func reduced(_ n: Double, _ parts: Int) -> Double {
                guard parts > 1 else { return 0 }
                return 4 * (n / Double(parts)).rounded(.up)
            }
            let shards = reduced(pd, dp) + reduced(pe, edp)
            // The windowed reduce-scatters' receive buffer (one window per rank of the group),
            // kept all run (CollectiveBuffer): the larger of the two needs.
            func window(_ n: Double, _ parts: Int) -> Double {
                guard parts > 1 else { return 0 }
                return 4 * Swift.min(Double(CanonicalSum.window), (n / Double(parts)).rounded(.up)) * Double(parts)
            }
            let collectiveBuffer = Swift.max(window(pd, dp), window(pe, edp))
            // The dense reduce-scatter starts with both full vectors held (the experts' is made
            // first); the experts' then holds one: the dense one's is the larger phase.
            let reducePhase = 4 * pe + 4 * pd
            let gradients = 4 * pd + shards + Swift.max(backwardPhase, reducePhase)

            // Activations: one micro-batch's tape, times those in flight on this stage.
            let inFlight = PipelineSchedule.mostInFlight(stage: s, stages: pp, micros: micros)
            let widths = MemoryPlan.tapeWidths(c, layers: layers, first: s == 0, last: s == pp - 1, length: t, ep: ep)
            let tape = MemoryPlan.tapeBytes(widths, tokens: tokens) * Double(inFlight)
                + MemoryPlan.tapeBytes(MemoryPlan.backwardWidths(c, layers: layers, length: t, ep: ep), tokens: tokens)
            // Kept until the step's end for the experts' weight gradients: each routed row's
            // input and output gradient, on the rank that owns its expert (on average as many
            // rows as the rank routes); their activations cached within the trainer's budget.
            let moe = layers.filter { c.isMoELayer($0) }.count
            let routedRows = Double(tokens * micros * c.numExpertsPerTok * moe)
            let kept = 4 * routedRows * 2 * Double(c.hiddenSize)
            let budget = Double(ExpertParallel.cacheBudget(parameterFloats: dense + expert))
            let cached = Swift.min(budget, 4 * routedRows * 4 * Double(c.moeIntermediateSize))
            let activations = tape + kept + (moe > 0 && micros * ep > 1 ? cached : 0)

            let sends = (pp > 1 ? 4 * Double(tokens * c.hiddenSize) * Double(inFlight) * 2 : 0) + collectiveBuffer
            let runtime = MemoryPlan.runtimeBytes(world: dp * pp)
            out.append(Rank(stage: s, layers: layers, parametersOnRank: dense + expert, weightsBytes: weights,
                            gradientsBytes: gradients, optimizerBytes: moments, activationsBytes: activations,
                            communicationBytes: sends, runtimeBytes: runtime,
                            totalBytes: weights + gradients + moments + activations + sends + runtime))
        }
        ranks = out
        peakBytes = out.map(\.totalBytes).max() ?? 0
    }

    /// The buffers the autograd tape holds between a micro-batch's forward and its backward,
    /// as floats per token, op by op as the model files make them (views — reshape, split,
    /// broadcast — hold nothing): each op's output, kept for its consumer's backward.
    package static func tapeWidths(_ c: DeepSeekConfig, layers: [Int], first: Bool, last: Bool, length t: Int, ep: Int) -> [Int] {
        let d = c.hiddenSize, h = c.numAttentionHeads, rope = c.qkRopeHeadDim, qk = c.qHeadDim
        // MultiHeadLatentAttention: input norm; queries (q_a and its norm, q_b; rope on its
        // tail); latent (kv_a, its norm, rope); kv_b; the softmax probabilities (t keys per query
        // and head; latentAttention assembles no keys and copies no values); the heads' output;
        // o_proj; the residual; the post-attention norm.
        var attention = [d] + (c.qLoraRank.map { [$0, $0] } ?? []) + [h * qk, h * qk]
        attention += [c.kvLoraRank + rope, c.kvLoraRank, rope, h * (c.qkNopeHeadDim + c.vHeadDim)]
        attention += [h * t, h * c.vHeadDim, d, d, d]
        // DeepSeekMoE: router logits and scores; per routed row (k per token) the expert
        // executor's send, receive, gate, up, activation, output and returned rows (alone in its
        // ep group a rank receives its send buffer and returns its output: no copies); the
        // combined output; the shared experts (gate, up, SwiGLU, down); their sum; the residual.
        let k = c.numExpertsPerTok, inter = c.moeIntermediateSize, shared = c.nSharedExperts * inter
        let rowCopies = ep > 1 ? 4 : 2
        var moe = [c.nRoutedExperts, c.nRoutedExperts] + [Int](repeating: k * d, count: rowCopies) + [Int](repeating: k * inter, count: 3) + [d]
        if shared > 0 { moe += [shared, shared, shared, d, d] }
        moe.append(d)
        let mlp = [c.intermediateSize, c.intermediateSize, c.intermediateSize, d, d]
        var widths = first ? [d] : []
        for l in layers { widths += attention + (c.isMoELayer(l) ? moe : mlp) }
        // Final norm, logits, and cross-entropy's probabilities.
        if last { widths += [d, c.vocabSize, c.vocabSize] }
        return widths
    }

    /// The gradients one layer's backward makes while the tape is still whole (the largest
    /// layer of the stage): for attention the probabilities' gradient and those of q, of
    /// kv_b's output ([k_nope | v]), of each head's k_pe and of the heads' output; for an MoE layer the expert executor's output-gradient, received,
    /// input-gradient and returned rows (with ep = 1 it receives its output-gradient rows and
    /// returns its input-gradient rows: two buffers, not four)
    /// and its hidden gradients; the layer's input gradient and the residual stream's.
    package static func backwardWidths(_ c: DeepSeekConfig, layers: [Int], length t: Int, ep: Int) -> [Int] {
        let d = c.hiddenSize, h = c.numAttentionHeads, k = c.numExpertsPerTok
        let attention = [h * t, h * c.qHeadDim, h * (c.qkNopeHeadDim + c.vHeadDim), h * c.qkRopeHeadDim, h * c.vHeadDim, d, d]
        let moe = [Int](repeating: k * d, count: ep > 1 ? 4 : 2) + [3 * k * c.moeIntermediateSize, d, d]
        let mlp = [c.intermediateSize, c.intermediateSize, c.intermediateSize, d, d]
        let sizes = layers.map { c.isMoELayer($0) ? moe : mlp } + (layers.isEmpty ? [] : [attention])
        return sizes.max { $0.reduce(0, +) < $1.reduce(0, +) } ?? []
    }

    /// Bytes of the tape's buffers for `tokens` tokens, each rounded up to the buffer pool's
    /// size class as the pool allocates it.
    package static func tapeBytes(_ widths: [Int], tokens: Int) -> Double {
        widths.reduce(0) { $0 + Double(TensorMemory.bufferBytes(floats: $1 * tokens)) }
    }

    enum CodingKeys: String, CodingKey {
        case ranks
        case peakBytes = "peak_bytes"
    }
}
