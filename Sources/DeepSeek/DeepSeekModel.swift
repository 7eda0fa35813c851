import Autograd
import NN

/// A decoder layer: pre-norm MLA and a dense SwiGLU or DeepSeekMoE feed-forward, with residuals.
/// Not final: an MTP depth (`MTPLayer`) is a decoder block with its input projection beside it.
package class DeepSeekDecoderLayer: Module, @unchecked Sendable {
    package let input_layernorm: RMSNorm
    package let self_attn: MultiHeadLatentAttention
    package let post_attention_layernorm: RMSNorm
    /// Exactly one of these is set; both are named `mlp` in checkpoints.
    package let denseMLP: SwiGLU?
    package let moe: DeepSeekMoE?

    override package var keys: [String: String] { ["denseMLP": "mlp", "moe": "mlp"] }

    package init(_ c: DeepSeekConfig, index: Int) {
        input_layernorm = RMSNorm(c.hiddenSize, eps: Float(c.rmsNormEps))
        self_attn = MultiHeadLatentAttention(c)
        post_attention_layernorm = RMSNorm(c.hiddenSize, eps: Float(c.rmsNormEps))
        if c.isMoELayer(index) {
            moe = DeepSeekMoE(c)
            denseMLP = nil
        } else {
            denseMLP = SwiGLU(dim: c.hiddenSize, hidden: c.intermediateSize)
            moe = nil
        }
    }

    /// `experts`/`index`: where an evaluation's routed experts run (ExpertExecutor), and this layer's index.
    package func callAsFunction(_ x: Tensor, cos: Tensor, sin: Tensor, training: MoETraining?, segments: [Int]? = nil,
                               experts: ExpertExecutor? = nil, index: Int = 0, routes: RouteReplay? = nil) -> (Tensor, MoELayerReport?) {
        let h = x + self_attn(input_layernorm(x), cos: cos, sin: sin, segments: segments)
        let normed = post_attention_layernorm(h)
        if let moe {
            let (y, report) = moe(normed, training: training, executor: experts, layer: index, routes: routes)
            return (h + y, report)
        }
        return (h + denseMLP!(normed), nil)
    }
}

package final class DeepSeekBody: Module, @unchecked Sendable {
    package let embed_tokens: Embedding
    package let layers: [DeepSeekDecoderLayer]
    package let norm: RMSNorm

    init(_ c: DeepSeekConfig) {
        embed_tokens = Embedding(c.vocabSize, c.hiddenSize)
        layers = (0..<c.numHiddenLayers).map { DeepSeekDecoderLayer(c, index: $0) }
        norm = RMSNorm(c.hiddenSize, eps: Float(c.rmsNormEps))
    }
}

/// Everything one forward produces; `hidden` and the per-layer reports serve the
/// reference-comparison dump (docs/design.md §5) and the training metrics.
package struct DeepSeekOutput {
    package let logits: Tensor
    /// hidden[0] = embeddings, hidden[l + 1] = after layer l, last = after the final norm.
    package let hidden: [Tensor]
    /// The hidden states after the final norm, [B, T, D] (what the MTP depths start from).
    package let normed: Tensor
    /// (layer index, report) for every MoE layer.
    package let moe: [(Int, MoELayerReport)]

    /// Σ over MoE layers of the three balance losses (zero in evaluation).
    package var balanceLoss: Tensor {
        var total = Tensor(scalar: 0)
        for (_, r) in moe {
            if let l = r.losses { total = total + l.expert + l.device + l.communication }
        }
        return total
    }
}

/// DeepSeek-V2 for causal language modelling, with Hugging Face parameter names.
package final class DeepSeekForCausalLM: Module, @unchecked Sendable {
    package let config: DeepSeekConfig
    package let model: DeepSeekBody
    package let lm_head: Linear
    package let rotary: RotaryTables
    /// V3's multi-token-prediction depths (`num_nextn_predict_layers`), named
    /// `model.layers.<num_hidden_layers + k − 1>.*`; nil when there are none.
    package let mtp: MultiTokenPrediction?

    /// Each V3 router's bias (`e_score_correction_bias`) with its Hugging Face name, MTP depths
    /// included: buffers that checkpoints keep and aux-loss-free balancing moves.
    package var routerBiases: [(layer: Int, name: String, bias: Tensor)] {
        // MTP depth k is layer num_hidden_layers + k − 1, right after the decoder's.
        (model.layers + (mtp?.depths ?? [])).enumerated().compactMap { l, layer in
            layer.moe?.gate.bias.map { (l, Self.routerBiasName(layer: l), $0) }
        }
    }

    /// The Hugging Face name of layer `l`'s router bias.
    package static func routerBiasName(layer l: Int) -> String { "model.layers.\(l).mlp.gate.e_score_correction_bias" }

    /// The decoder (or MTP) layer a Hugging Face name belongs to (`model.layers.L.…`), nil for
    /// the embedding, the final norm and the head.
    package static func layerIndex(of name: String) -> Int? {
        guard name.hasPrefix("model.layers.") else { return nil }
        return Int(name.dropFirst("model.layers.".count).prefix { $0.isNumber })
    }

    /// The names and shapes of `routerBiases` a config's model has.
    package static func bufferShapes(_ c: DeepSeekConfig) -> [(name: String, shape: [Int])] {
        guard c.topkMethod == .noauxTC else { return [] }
        return (0..<(c.numHiddenLayers + c.numNextnPredictLayers)).filter { c.isMoELayer($0) }
            .map { (routerBiasName(layer: $0), [c.nRoutedExperts]) }
    }

    /// Copies of shared tensors that DeepSeek's release stores beside each MTP depth
    /// (`model.layers.<L>.embed_tokens.weight`, `.shared_head.head.weight`): (copy, shared).
    package static func sharedCopies(_ c: DeepSeekConfig) -> [(copy: String, of: String)] {
        (0..<c.numNextnPredictLayers).flatMap { k in
            [("model.layers.\(c.numHiddenLayers + k).embed_tokens.weight", "model.embed_tokens.weight"),
             ("model.layers.\(c.numHiddenLayers + k).shared_head.head.weight", "lm_head.weight")]
        }
    }

    /// Sets the router biases from `values` (name → E floats); names it lacks keep theirs.
    package func setRouterBiases(_ values: [String: [Float]]) {
        for (_, name, b) in routerBiases {
            if let v = values[name], v.count == b.count { for i in v.indices { b.data[i] = v[i] } }
        }
    }

    package var routerBiasValues: [String: [Float]] {
        Dictionary(uniqueKeysWithValues: routerBiases.map { ($0.name, $0.bias.values) })
    }

    /// The parameters' Hugging Face names and shapes, in canonical order, without their
    /// weight-sized memory: what a streaming conversion checks files against.
    /// A reward model's head is transformers' `score` (one row); a language model's `lm_head`.
    override package var keys: [String: String] { config.isRewardModel ? ["lm_head": "score"] : [:] }

    package static func parameterShapes(_ c: DeepSeekConfig) -> [(name: String, shape: [Int])] {
        ParameterShapes.$only.withValue(true) {
            DeepSeekForCausalLM(c, seed: 0, positions: 1).namedParameters().map { ($0.0, $0.1.shape) }
        }
    }

    /// `holds`: the parameters this rank keeps (`ProcessGrid.holds`); the others are never
    /// initialised or touched, so they cost no memory (lazily zeroed pages).
    package init(_ c: DeepSeekConfig, seed: UInt64, positions: Int? = nil, holds: ((String) -> Bool)? = nil) {
        config = c
        model = DeepSeekBody(c)
        lm_head = Linear(c.hiddenSize, c.numLabels ?? c.vocabSize)
        rotary = RotaryTables(config: c, positions: positions ?? Swift.min(c.maxPositionEmbeddings, 4096))
        mtp = c.numNextnPredictLayers > 0 ? MultiTokenPrediction(c, depth: c.numNextnPredictLayers) : nil
        super.init()
        initialize(seed: seed, std: Float(c.initializerRange), holds: holds)
    }

    /// ids: B·T token ids (row-major) at positions start..<start+T.
    /// `packing`: per-token positions and segment ids for rows that hold several sequences.
    package func forward(_ ids: [Int], batch b: Int, length t: Int, start: Int = 0, training: MoETraining? = nil,
                        keepHidden: Bool = false, packing: (positions: [Int], segments: [Int])? = nil) -> DeepSeekOutput {
        guard ids.count == b * t, start + t <= rotary.cos.shape[0] else {
            shapeFailure("DeepSeekForCausalLM", "\(ids.count) ids for batch \(b) × length \(t) at position \(start) (tables hold \(rotary.cos.shape[0]) positions)")
        }
        var h = model.embed_tokens(ids, shape: [b, t])
        var hidden: [Tensor] = keepHidden ? [h] : []
        let (out, reports) = runLayers(h, layers: 0..<model.layers.count, start: start, training: training, packing: packing, each: {
            if keepHidden { hidden.append($0) }
        })
        h = model.norm(out)
        if keepHidden { hidden.append(h) }
        return DeepSeekOutput(logits: lm_head(h), hidden: hidden, normed: h, moe: reports)
    }

    /// Decoder layers `layers` over hidden states h [B, T, D] at positions start..<start+T (a
    /// pipeline stage runs its own range; the whole model runs all of them).
    /// `experts`: where the routed experts of a forward without `training` run (the grid's
    /// all-to-all in a sharded evaluation); nil: here.
    /// `before(i)` runs ahead of layer i (the trainer waits there for its parameters to arrive).
    /// `routes`: a rollout's recorded experts for the MoE layers (RouteReplay).
    package func runLayers(_ x: Tensor, layers: Range<Int>, start: Int = 0, training: MoETraining? = nil,
                          packing: (positions: [Int], segments: [Int])? = nil, experts: ExpertExecutor? = nil, routes: RouteReplay? = nil,
                          before: (Int) -> Void = { _ in }, each: (Tensor) -> Void = { _ in }) -> (Tensor, [(Int, MoELayerReport)]) {
        let t = x.shape[1]
        var cos = rotary.cos.slice(axis: 0, start..<(start + t)), sin = rotary.sin.slice(axis: 0, start..<(start + t))
        if let packing {
            cos = rotary.cos.indexSelect(packing.positions)
            sin = rotary.sin.indexSelect(packing.positions)
        }
        var h = x
        var reports: [(Int, MoELayerReport)] = []
        for i in layers {
            before(i)
            var training = training
            training?.seed ^= UInt64(i) &* 0x9E37_79B9  // per-layer never-drop draw
            training?.layer = i
            let (out, report) = model.layers[i](h, cos: cos, sin: sin, training: training, segments: packing?.segments,
                                                experts: experts, index: i, routes: routes)
            h = out
            each(h)
            if let report { reports.append((i, report)) }
        }
        return (h, reports)
    }

    /// Next-token targets for rows of ids, shifted as Hugging Face does (the last position of
    /// each row has none).
    package static func shiftedTargets(_ labels: [Int], batch b: Int, length t: Int) -> [Int] {
        var targets = [Int](repeating: ignoreIndex, count: b * t)
        for r in 0..<b { for i in 0..<(t - 1) { targets[r * t + i] = labels[r * t + i + 1] } }
        return targets
    }
}
