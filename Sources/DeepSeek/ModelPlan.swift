/// Parameter, FLOP, cache and traffic arithmetic for a configuration and a parallel layout:
/// what `deeptrain plan` prints, computed from the config alone (no weights are built). A
/// rank's memory is `MemoryPlan` (Parallel), which knows the trainer's buffers.
package struct ModelPlan: Codable, Sendable {
    package let totalParameters: Int
    /// Parameters a token passes through, embedding excluded (lm_head, router, shared and
    /// top-K experts included), as DeepSeek counts "activated" parameters.
    package let activatedParameters: Int
    package let embeddingParameters: Int
    package let expertParameters: Int
    /// V3's multi-token-prediction depths (their blocks, norms and eh_proj; the embedding and
    /// head they share are not counted again). Not in `totalParameters` or
    /// `activatedParameters`, as DeepSeek reports V3 (671B / 37B, MTP module aside).
    package let mtpParameters: Int
    /// Training FLOPs per token at `sequenceLength` (docs/design.md §7): 6·N_act + 6·L·H·T·(d_qk + d_v).
    package let flopsPerToken: Double
    package let sequenceLength: Int
    /// Values the absorbed MLA cache keeps per token per layer: kv_lora + qk_rope.
    package let kvCacheValuesPerTokenPerLayer: Int
    package let kvCacheBytesPerTokenBF16: Int
    /// A standard multi-head cache of the same heads: 2·H·d_v values per token per layer.
    package let mhaCacheBytesPerTokenBF16: Int
    package let layout: Layout
    package let allToAllBytesPerStepPerRank: Double

    package struct Layout: Codable, Sendable {
        package let dp: Int, ep: Int, pp: Int
        /// Sequences per micro-batch; micro-batches per step over all ranks.
        package let microBatch: Int, microbatches: Int

        enum CodingKeys: String, CodingKey {
            case dp
            case ep
            case pp
            case microBatch = "micro_batch"
            case microbatches
        }
    }

    package init(_ c: DeepSeekConfig, sequenceLength t: Int, dp: Int = 1, ep: Int = 1, pp: Int = 1,
                microBatch: Int = 1, microbatches: Int = 1) {
        let d = c.hiddenSize, h = c.numAttentionHeads
        let attention: Int = {
            let q = c.qLoraRank.map { d * $0 + $0 + $0 * h * c.qHeadDim } ?? d * h * c.qHeadDim
            return q + d * (c.kvLoraRank + c.qkRopeHeadDim) + c.kvLoraRank
                + c.kvLoraRank * h * (c.qkNopeHeadDim + c.vHeadDim) + h * c.vHeadDim * d
        }()
        let expert = 3 * d * c.moeIntermediateSize
        let dense = 3 * d * c.intermediateSize
        let moeLayers = (0..<c.numHiddenLayers).filter { c.isMoELayer($0) }.count
        let denseLayers = c.numHiddenLayers - moeLayers
        let perLayer = attention + 2 * d
        let embedding = c.vocabSize * d
        let routed = moeLayers * c.nRoutedExperts * expert
        let moeAlways = c.nSharedExperts * expert + c.nRoutedExperts * d  // shared experts + router
        totalParameters = 2 * embedding + d + c.numHiddenLayers * perLayer + denseLayers * dense
            + moeLayers * moeAlways + routed
        activatedParameters = embedding + d + c.numHiddenLayers * perLayer + denseLayers * dense
            + moeLayers * (moeAlways + c.numExpertsPerTok * expert)
        embeddingParameters = embedding
        expertParameters = routed
        mtpParameters = (0..<c.numNextnPredictLayers).reduce(0) { sum, k in
            let block = perLayer + (c.isMoELayer(c.numHiddenLayers + k) ? moeAlways + c.nRoutedExperts * expert : dense)
            return sum + block + 2 * d + 2 * d * d + d  // enorm, hnorm, eh_proj, shared_head.norm
        }
        // Matmul parameters per token: activated minus the norm vectors.
        let norms = d + c.numHiddenLayers * 2 * d + c.numHiddenLayers * (c.kvLoraRank + (c.qLoraRank ?? 0))
        flopsPerToken = 6 * Double(activatedParameters - norms)
            + 6 * Double(c.numHiddenLayers * h * t * (c.qHeadDim + c.vHeadDim))
        sequenceLength = t
        kvCacheValuesPerTokenPerLayer = c.kvLoraRank + c.qkRopeHeadDim
        kvCacheBytesPerTokenBF16 = c.numHiddenLayers * (c.kvLoraRank + c.qkRopeHeadDim) * 2
        mhaCacheBytesPerTokenBF16 = c.numHiddenLayers * 2 * h * c.vHeadDim * 2
        layout = Layout(dp: dp, ep: ep, pp: pp, microBatch: microBatch, microbatches: microbatches)

        // Dispatch and combine, forward and backward: 4 transfers of every routed copy of a
        // token's hidden state (fp32); the share (ep−1)/ep leaves the rank. That is the ep group
        // on one node; across nodes a token crosses to a node once and is fanned out there
        // (ExpertParallel's gateways), fewer bytes between nodes: `bench dispatch` counts them.
        // `microbatches` are over all ranks: a rank of a stage runs microbatches/dp of them.
        let tokensPerRank = Double(microBatch * Swift.max(microbatches / dp, 1) * t)
        let layersOnRank = Double(moeLayers) / Double(pp)
        allToAllBytesPerStepPerRank = ep == 1 ? 0 :
            4 * tokensPerRank * Double(c.numExpertsPerTok) * Double(d) * 4 * layersOnRank * Double(ep - 1) / Double(ep)
    }

    enum CodingKeys: String, CodingKey {
        case totalParameters = "total_parameters"
        case activatedParameters = "activated_parameters"
        case embeddingParameters = "embedding_parameters"
        case expertParameters = "expert_parameters"
        case mtpParameters = "mtp_parameters"
        case flopsPerToken = "flops_per_token"
        case sequenceLength = "sequence_length"
        case kvCacheValuesPerTokenPerLayer = "kv_cache_values_per_token_per_layer"
        case kvCacheBytesPerTokenBF16 = "kv_cache_bytes_per_token_bf16"
        case mhaCacheBytesPerTokenBF16 = "mha_cache_bytes_per_token_bf16"
        case layout
        case allToAllBytesPerStepPerRank = "all_to_all_bytes_per_step_per_rank"
    }
}
