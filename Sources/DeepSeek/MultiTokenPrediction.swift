import Autograd
import NN

/// The output norm of one MTP depth (`shared_head.norm`); the head itself is the model's
/// `lm_head` (DeepSeek's release stores a copy as `shared_head.head`, which loading checks
/// and saving writes: `DeepSeekForCausalLM.sharedCopies`).
package final class MTPSharedHead: Module, @unchecked Sendable {
    package let norm: RMSNorm
    init(_ c: DeepSeekConfig) { norm = RMSNorm(c.hiddenSize, eps: Float(c.rmsNormEps)) }
}

/// One multi-token-prediction depth of DeepSeek-V3 (V3 report §2.2): a decoder block whose
/// input combines the previous depth's hidden state with the embedding of the token k ahead,
/// h'_t = eh_proj([enorm(Emb(t_{t+k})); hnorm(h_t)]) (embedding first, as the released weights
/// use it), and whose output predicts token t+k+1 through `shared_head.norm` and the shared
/// `lm_head`. Its parameters sit beside the block's, under `model.layers.<L + k − 1>.`.
package final class MTPLayer: DeepSeekDecoderLayer, @unchecked Sendable {
    package let enorm: RMSNorm
    package let hnorm: RMSNorm
    package let eh_proj: Linear
    package let shared_head: MTPSharedHead

    package init(_ c: DeepSeekConfig, depth: Int) {
        enorm = RMSNorm(c.hiddenSize, eps: Float(c.rmsNormEps))
        hnorm = RMSNorm(c.hiddenSize, eps: Float(c.rmsNormEps))
        eh_proj = Linear(2 * c.hiddenSize, c.hiddenSize)
        shared_head = MTPSharedHead(c)
        super.init(c, index: c.numHiddenLayers + depth - 1)
    }
}

/// The MTP depths of a model, named as DeepSeek's release stores them: depth k is layer
/// num_hidden_layers + k − 1 (`model.layers.61.*` in V3). Inference does not run them.
package final class MultiTokenPrediction: Module, @unchecked Sendable {
    package let depths: [MTPLayer]
    let firstLayer: Int

    package init(_ c: DeepSeekConfig, depth: Int) {
        firstLayer = c.numHiddenLayers
        depths = (1...depth).map { MTPLayer(c, depth: $0) }
    }

    /// The layer index a depth's parameters are named by.
    package func layerIndex(depth k: Int) -> Int { firstLayer + k - 1 }

    override package func customParameters(prefix: String) -> [(String, Tensor)]? {
        depths.enumerated().flatMap { k, layer in layer.namedParameters(prefix: "model.layers.\(firstLayer + k)") }
    }

}

/// What the MTP depths give for one batch: the mean over depths of each depth's mean
/// cross-entropy, and each depth's value.
package struct MTPOutput {
    package let loss: Tensor
    package let perDepth: [Tensor]
    package let moe: [(Int, MoELayerReport)]
}

extension DeepSeekForCausalLM {
    /// The MTP loss of a batch: `normed` [B, T, D] the main model's hidden states after its
    /// final norm (depth 1's input), `ids` the B·T input tokens, `targets` their next-token
    /// targets as the main loss has them (targets[t] = token t + 1, or ignoreIndex). Depth k at
    /// position t (t < T − k) reads token t + k and predicts targets[t + k] (token t + k + 1);
    /// the block runs over T − k positions. `depth` limits the depths run (nil: all).
    package func mtpLoss(normed: Tensor, ids: [Int], targets labels: [Int], batch b: Int, length t: Int,
                        training: MoETraining? = nil, depth: Int? = nil) -> MTPOutput? {
        guard let mtp else { return nil }
        var h = normed
        var losses: [Tensor] = []
        var reports: [(Int, MoELayerReport)] = []
        for (i, layer) in mtp.depths.prefix(depth ?? mtp.depths.count).enumerated() {
            let k = i + 1, n = t - k
            guard n >= 2 else { break }  // nothing left to predict
            var ahead = [Int](), targets = [Int]()
            ahead.reserveCapacity(b * n)
            targets.reserveCapacity(b * n)
            for r in 0..<b {
                for p in 0..<n {
                    ahead.append(ids[r * t + p + k])
                    targets.append(labels[r * t + p + k])
                }
            }
            let e = layer.enorm(model.embed_tokens(ahead, shape: [b, n]))
            let prev = layer.hnorm(h.slice(axis: 1, 0..<n))
            let x = layer.eh_proj(Tensor.concat([e, prev], axis: -1))
            var tr = training
            tr?.seed ^= UInt64(mtp.layerIndex(depth: k)) &* 0x9E37_79B9
            tr?.layer = mtp.layerIndex(depth: k)
            let cos = rotary.cos.slice(axis: 0, 0..<n), sin = rotary.sin.slice(axis: 0, 0..<n)
            let (y, report) = layer(x, cos: cos, sin: sin, training: tr, index: mtp.layerIndex(depth: k))
            if let report { reports.append((mtp.layerIndex(depth: k), report)) }
            let logits = lm_head(layer.shared_head.norm(y))
            losses.append(logits.reshape([b * n, config.vocabSize]).crossEntropy(targets: targets))
            h = y
        }
        guard !losses.isEmpty else { return nil }
        var total = losses[0]
        for l in losses.dropFirst() { total = total + l }
        return MTPOutput(loss: total * (1 / Float(losses.count)), perDepth: losses, moe: reports)
    }
}
