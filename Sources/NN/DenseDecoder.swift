import Foundation
import Autograd

/// A Llama-style dense decoder (pre-norm RMSNorm, RoPE, causal multi-head attention, SwiGLU),
/// the first model built from the autograd parts and the baseline the MoE model is measured
/// against. Parameter names follow Hugging Face's Llama checkpoints.
package struct DenseDecoderConfig: Codable, Sendable, Equatable {
    package var vocabSize: Int
    package var hiddenSize: Int
    package var numHiddenLayers: Int
    package var numAttentionHeads: Int
    package var intermediateSize: Int
    package var maxPositionEmbeddings: Int
    package var ropeTheta: Double
    package var rmsNormEps: Float

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", intermediateSize = "intermediate_size"
        case maxPositionEmbeddings = "max_position_embeddings", ropeTheta = "rope_theta", rmsNormEps = "rms_norm_eps"
    }

    package init(vocabSize: Int, hiddenSize: Int, numHiddenLayers: Int, numAttentionHeads: Int,
                intermediateSize: Int, maxPositionEmbeddings: Int, ropeTheta: Double = 10_000, rmsNormEps: Float = 1e-6) {
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads
        self.intermediateSize = intermediateSize
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.ropeTheta = ropeTheta
        self.rmsNormEps = rmsNormEps
    }

    package var headDim: Int { hiddenSize / numAttentionHeads }

    /// The benchmark model of `deeptrain bench train --model dense`.
    package static let bench = DenseDecoderConfig(vocabSize: 4096, hiddenSize: 256, numHiddenLayers: 8,
                                                 numAttentionHeads: 8, intermediateSize: 1024, maxPositionEmbeddings: 256)

    /// Matmul parameters touched per token (docs/design.md §7's N_act: everything but the embedding).
    package var matmulParameters: Int {
        numHiddenLayers * (4 * hiddenSize * hiddenSize + 3 * hiddenSize * intermediateSize) + vocabSize * hiddenSize
    }

    /// Training FLOPs per token at sequence length `t`: 6·N_act + 6·L·H·T·(d_qk + d_v).
    package func flopsPerToken(sequenceLength t: Int) -> Double {
        6 * Double(matmulParameters) + 6 * Double(numHiddenLayers * numAttentionHeads * t * 2 * headDim)
    }
}

package final class DenseAttention: Module, @unchecked Sendable {
    package let q_proj, k_proj, v_proj, o_proj: Linear
    let heads: Int

    package init(_ c: DenseDecoderConfig) {
        q_proj = Linear(c.hiddenSize, c.hiddenSize)
        k_proj = Linear(c.hiddenSize, c.hiddenSize)
        v_proj = Linear(c.hiddenSize, c.hiddenSize)
        o_proj = Linear(c.hiddenSize, c.hiddenSize)
        heads = c.numAttentionHeads
    }

    /// x [B, T, D] → [B, T, D].
    package func callAsFunction(_ x: Tensor, cos: Tensor, sin: Tensor) -> Tensor {
        let b = x.shape[0], t = x.shape[1], d = x.shape[2], hd = d / heads
        let q = q_proj(x).reshape([b, t, heads, hd]).rotaryEmbedding(cos: cos, sin: sin)
        let k = k_proj(x).reshape([b, t, heads, hd]).rotaryEmbedding(cos: cos, sin: sin)
        let v = v_proj(x).reshape([b, t, heads, hd])
        let o = Tensor.attention(q: q, k: k, v: v, scale: 1 / Float(hd).squareRoot(), causal: true)
        return o_proj(o.reshape([b, t, d]))
    }
}

package final class DenseDecoderLayer: Module, @unchecked Sendable {
    package let input_layernorm: RMSNorm
    package let self_attn: DenseAttention
    package let post_attention_layernorm: RMSNorm
    package let mlp: SwiGLU

    package init(_ c: DenseDecoderConfig) {
        input_layernorm = RMSNorm(c.hiddenSize, eps: c.rmsNormEps)
        self_attn = DenseAttention(c)
        post_attention_layernorm = RMSNorm(c.hiddenSize, eps: c.rmsNormEps)
        mlp = SwiGLU(dim: c.hiddenSize, hidden: c.intermediateSize)
    }

    package func callAsFunction(_ x: Tensor, cos: Tensor, sin: Tensor) -> Tensor {
        let h = x + self_attn(input_layernorm(x), cos: cos, sin: sin)
        return h + mlp(post_attention_layernorm(h))
    }
}

package final class DenseDecoderBody: Module, @unchecked Sendable {
    package let embed_tokens: Embedding
    package let layers: [DenseDecoderLayer]
    package let norm: RMSNorm

    init(_ c: DenseDecoderConfig) {
        embed_tokens = Embedding(c.vocabSize, c.hiddenSize)
        layers = (0..<c.numHiddenLayers).map { _ in DenseDecoderLayer(c) }
        norm = RMSNorm(c.hiddenSize, eps: c.rmsNormEps)
    }
}

package final class DenseDecoderLM: Module, @unchecked Sendable {
    package let config: DenseDecoderConfig
    package let model: DenseDecoderBody
    package let lm_head: Linear
    let cos: Tensor, sin: Tensor

    package init(_ c: DenseDecoderConfig, seed: UInt64) {
        config = c
        model = DenseDecoderBody(c)
        lm_head = Linear(c.hiddenSize, c.vocabSize)
        (cos, sin) = rotaryTables(positions: c.maxPositionEmbeddings, dim: c.headDim, theta: c.ropeTheta)
        super.init()
        initialize(seed: seed)
    }

    /// ids: B·T token ids (row-major) → logits [B, T, V].
    package func callAsFunction(_ ids: [Int], batch b: Int, length t: Int) -> Tensor {
        guard ids.count == b * t, t <= config.maxPositionEmbeddings else {
            shapeFailure("DenseDecoderLM", "\(ids.count) ids for batch \(b) × length \(t) (max positions \(config.maxPositionEmbeddings))")
        }
        let c = cos.slice(axis: 0, 0..<t), s = sin.slice(axis: 0, 0..<t)
        var h = model.embed_tokens(ids, shape: [b, t])
        for layer in model.layers { h = layer(h, cos: c, sin: s) }
        return lm_head(model.norm(h))
    }

    /// Mean next-token cross-entropy of a batch whose targets are given per position
    /// (`ignoreIndex` where a position does not count).
    package func loss(_ ids: [Int], targets: [Int], batch b: Int, length t: Int) -> Tensor {
        let logits = self(ids, batch: b, length: t)
        return logits.reshape([b * t, config.vocabSize]).crossEntropy(targets: targets)
    }
}
