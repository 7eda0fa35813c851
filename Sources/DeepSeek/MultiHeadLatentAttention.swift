import Autograd
import NN

/// Multi-head Latent Attention (DeepSeek-V2 §2.1). Queries go through a low-rank bottleneck
/// (or a plain `q_proj` when `q_lora_rank` is null); keys and values are rebuilt per head from
/// one compressed latent c_KV (`kv_lora_rank` values per token) plus one rope key head shared by
/// all heads, which is what generation caches (kv_lora + qk_rope values per token per layer).
package final class MultiHeadLatentAttention: Module, @unchecked Sendable {
    package let q_proj: Linear?
    package let q_a_proj: Linear?
    package let q_a_layernorm: RMSNorm?
    package let q_b_proj: Linear?
    package let kv_a_proj_with_mqa: Linear
    package let kv_a_layernorm: RMSNorm
    package let kv_b_proj: Linear
    package let o_proj: Linear
    let heads, nope, rope, vDim, kvLora: Int
    let scale: Float
    /// Rope dimensions stored as interleaved pairs (DeepSeek's checkpoints) or rotate-half (V3 with
    /// `rope_interleave: false`).
    let interleaved: Bool

    package init(_ c: DeepSeekConfig) {
        interleaved = c.ropeInterleave
        heads = c.numAttentionHeads
        nope = c.qkNopeHeadDim
        rope = c.qkRopeHeadDim
        vDim = c.vHeadDim
        kvLora = c.kvLoraRank
        if let r = c.qLoraRank {
            q_proj = nil
            q_a_proj = Linear(c.hiddenSize, r)
            // DeepSeek's code builds the latent norms with their default eps (1e-6), not rms_norm_eps.
            q_a_layernorm = RMSNorm(r, eps: 1e-6)
            q_b_proj = Linear(r, heads * c.qHeadDim)
        } else {
            q_proj = Linear(c.hiddenSize, heads * c.qHeadDim)
            q_a_proj = nil
            q_a_layernorm = nil
            q_b_proj = nil
        }
        kv_a_proj_with_mqa = Linear(c.hiddenSize, kvLora + rope)
        kv_a_layernorm = RMSNorm(kvLora, eps: 1e-6)
        kv_b_proj = Linear(kvLora, heads * (nope + vDim))
        o_proj = Linear(heads * vDim, c.hiddenSize)
        scale = Float(c.softmaxScale)
    }

    /// Queries [B, T, H, nope + rope] with rope applied to their last `rope` dimensions.
    func queries(_ x: Tensor, cos: Tensor, sin: Tensor) -> Tensor {
        let b = x.shape[0], t = x.shape[1]
        let q: Tensor
        if let q_proj { q = q_proj(x) } else { q = q_b_proj!(q_a_layernorm!(q_a_proj!(x))) }
        return rotate(q.reshape([b, t, heads, nope + rope]), cos: cos, sin: sin, keep: nope)
    }

    /// The latent c_KV (normalised) [B, T, kv_lora] and the rotated shared rope key [B, T, 1, rope].
    func latent(_ x: Tensor, cos: Tensor, sin: Tensor) -> (Tensor, Tensor) {
        let b = x.shape[0], t = x.shape[1]
        let parts = kv_a_proj_with_mqa(x).split([kvLora, rope], axis: -1)
        let c = kv_a_layernorm(parts[0])
        let kPe = rotate(parts[1].reshape([b, t, 1, rope]), cos: cos, sin: sin)
        return (c, kPe)
    }

    /// RoPE on the last `rope` dimensions of [B, T, h, keep + rope] (the first `keep` pass
    /// through), with tables per position [T, rope/2], or per token [B·T, rope/2] (packed rows,
    /// whose positions restart with each sequence).
    func rotate(_ x: Tensor, cos: Tensor, sin: Tensor, keep: Int = 0) -> Tensor {
        let b = x.shape[0], t = x.shape[1]
        if cos.shape[0] == t { return x.rotaryEmbedding(cos: cos, sin: sin, interleaved: interleaved, keep: keep) }
        return x.reshape([1, b * t, x.shape[2], x.shape[3]])
            .rotaryEmbedding(cos: cos, sin: sin, interleaved: interleaved, keep: keep).reshape(x.shape)
    }

    /// x [B, T, hidden] at positions given by the rows of `cos`/`sin` → [B, T, hidden];
    /// `segments` packs several sequences per row (`Tensor.attention`).
    package func callAsFunction(_ x: Tensor, cos: Tensor, sin: Tensor, segments: [Int]? = nil) -> Tensor {
        let b = x.shape[0], t = x.shape[1]
        let q = queries(x, cos: cos, sin: sin)
        let (c, kPe) = latent(x, cos: cos, sin: sin)
        // Per head [k_nope | v] and the shared rope key go to the kernel as they are: it builds
        // each head's keys itself, so no per-head key tensor is assembled here.
        let kv = kv_b_proj(c).reshape([b, t, heads, nope + vDim])
        let o = Tensor.latentAttention(q: q, kv: kv, kPe: kPe, nope: nope, scale: scale, causal: true, segments: segments)
        return o_proj(o.reshape([b, t, heads * vDim]))
    }
}
