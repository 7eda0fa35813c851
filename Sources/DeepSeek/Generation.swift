import Foundation
import Autograd
import NN

/// Incremental decoding caches. The latent cache is MLA's point: per token per layer it keeps
/// only c_KV (kv_lora values) and the shared rope key (qk_rope values), and attends through the
/// absorbed projections; the full cache keeps every head's decompressed key and value, as a
/// standard multi-head attention would, for comparison.
package enum CacheKind: String, Sendable, CaseIterable, Codable {
    case latent, full
}

package final class KVCache {
    package let kind: CacheKind
    package let batch: Int
    package let capacity: Int
    package private(set) var length = 0
    /// Per layer: latent c [B, cap, kv_lora] and k_pe [B, cap, rope], or full k [B, cap, H, qhd]
    /// and v [B, cap, H, v].
    var first: [Tensor]
    var second: [Tensor]
    let firstRow: Int, secondRow: Int

    /// The layers this cache serves: all of them, or a pipeline stage's.
    package let layers: Range<Int>

    /// `layers`: a pipeline stage's range (the others get no memory); nil: every layer.
    package init(_ c: DeepSeekConfig, kind: CacheKind, batch: Int, capacity: Int, layers: Range<Int>? = nil) {
        self.kind = kind
        self.batch = batch
        self.capacity = capacity
        let l = c.numHiddenLayers, h = c.numAttentionHeads
        let served = layers ?? 0..<l
        self.layers = served
        switch kind {
        case .latent:
            firstRow = c.kvLoraRank
            secondRow = c.qkRopeHeadDim
        case .full:
            firstRow = h * c.qHeadDim
            secondRow = h * c.vHeadDim
        }
        let (w1, w2) = (firstRow, secondRow)
        first = (0..<l).map { served.contains($0) ? Tensor(zeros: [batch, capacity, w1]) : Tensor(zeros: [1, 1, 1]) }
        second = (0..<l).map { served.contains($0) ? Tensor(zeros: [batch, capacity, w2]) : Tensor(zeros: [1, 1, 1]) }
    }

    /// A cache of `indices.count` rows, row i a copy of row `indices[i]` of this one, at the same
    /// length: a prompt's prefill shared by its completions (indices repeated), or the rows still
    /// decoding (finished ones dropped).
    package func rows(_ indices: [Int]) -> KVCache {
        let out = KVCache(kind: kind, batch: indices.count, capacity: capacity, layers: layers, widths: (firstRow, secondRow),
                          count: first.count)
        out.length = length
        for l in layers {
            for (from, into, w) in [(first[l], out.first[l], firstRow), (second[l], out.second[l], secondRow)] {
                for (i, r) in indices.enumerated() {
                    (into.data + i * capacity * w).update(from: from.data + r * capacity * w, count: length * w)
                }
            }
        }
        return out
    }

    private init(kind: CacheKind, batch: Int, capacity: Int, layers: Range<Int>, widths: (Int, Int), count l: Int) {
        self.kind = kind
        self.batch = batch
        self.capacity = capacity
        self.layers = layers
        (firstRow, secondRow) = widths
        first = (0..<l).map { layers.contains($0) ? Tensor(zeros: [batch, capacity, widths.0]) : Tensor(zeros: [1, 1, 1]) }
        second = (0..<l).map { layers.contains($0) ? Tensor(zeros: [batch, capacity, widths.1]) : Tensor(zeros: [1, 1, 1]) }
    }

    /// Bytes the cache holds per token (all layers, float32 as stored here).
    package var bytesPerToken: Int { layers.count * (firstRow + secondRow) * 4 }

    /// Writes `rows` [B, Tn, width] at positions length..<length+Tn of layer `l`'s tensor.
    func append(_ t: Tensor, into store: Tensor, width: Int) {
        let tn = t.shape[1], src = t.contiguous()
        for b in 0..<batch {
            (store.data + (b * capacity + length) * width).update(from: src.data + b * tn * width, count: tn * width)
        }
    }

    func view(_ store: Tensor, upTo n: Int) -> Tensor { store.slice(axis: 1, 0..<n) }

    /// Moves past `n` tokens once every served layer has appended them.
    package func advance(_ n: Int) { length += n }
}

extension MultiHeadLatentAttention {
    /// One decoding step for `x` [B, Tn, hidden] at positions cache.length..., layer `l`.
    func decode(_ x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache, layer l: Int) -> Tensor {
        let b = x.shape[0], tn = x.shape[1], s = cache.length + tn
        let q = queries(x, cos: cos, sin: sin)  // [B, Tn, H, nope + rope]
        let (c, kPe) = latent(x, cos: cos, sin: sin)
        switch cache.kind {
        case .full:
            let kv = kv_b_proj(c).reshape([b, tn, heads, nope + vDim]).split([nope, vDim], axis: -1)
            let k = Tensor.concat([kv[0], kPe.broadcast(to: [b, tn, heads, rope])], axis: -1)
            cache.append(k.reshape([b, tn, heads * (nope + rope)]), into: cache.first[l], width: heads * (nope + rope))
            cache.append(kv[1].reshape([b, tn, heads * vDim]), into: cache.second[l], width: heads * vDim)
            let keys = cache.view(cache.first[l], upTo: s).reshape([b, s, heads, nope + rope])
            let values = cache.view(cache.second[l], upTo: s).reshape([b, s, heads, vDim])
            let o = Tensor.attention(q: q, k: keys, v: values, scale: scale, causal: true)
            return o_proj(o.reshape([b, tn, heads * vDim]))
        case .latent:
            cache.append(c, into: cache.first[l], width: kvLora)
            cache.append(kPe.reshape([b, tn, rope]), into: cache.second[l], width: rope)
            // Attends through the absorbed projections: no per-head key or value is built.
            let o = Tensor.absorbedLatentAttention(q: q, latents: cache.first[l], ropeKeys: cache.second[l], length: s,
                                                   kvB: kv_b_proj.weight, nope: nope, vDim: vDim, scale: scale)
            return o_proj(o)
        }
    }
}

extension DeepSeekForCausalLM {
    /// Feeds `ids` (B·Tn) at the cache's current position and returns logits [B, Tn, V].
    package func decode(_ ids: [Int], batch b: Int, cache: KVCache) -> Tensor {
        let tn = ids.count / b
        return SpinningWorker.serve { withNoGrad {
            let h = decodeLayers(model.embed_tokens(ids, shape: [b, tn]), layers: 0..<model.layers.count, cache: cache)
            cache.advance(tn)
            return lm_head(model.norm(h))
        } }
    }

    /// Decoder layers `layers` over h [B, Tn, D] at the cache's position: a pipeline stage's
    /// share of `decode` (the caller advances the cache). `experts` runs the routed experts
    /// elsewhere (the grid's all-to-all); nil: here. `record(layer, experts)` receives each MoE
    /// layer's choice, [B·Tn·K] (router replay).
    package func decodeLayers(_ x: Tensor, layers: Range<Int>, cache: KVCache, experts: ExpertExecutor? = nil,
                              record: ((Int, [Int]) -> Void)? = nil) -> Tensor {
        let tn = x.shape[1], start = cache.length
        guard start + tn <= cache.capacity, start + tn <= rotary.cos.shape[0] else {
            shapeFailure("decode", "position \(start + tn) exceeds the cache (\(cache.capacity)) or the rotary tables (\(rotary.cos.shape[0]))")
        }
        return SpinningWorker.serve { withNoGrad {
            let cos = rotary.cos.slice(axis: 0, start..<(start + tn)), sin = rotary.sin.slice(axis: 0, start..<(start + tn))
            var h = x
            for l in layers {
                let layer = model.layers[l]
                h = h + layer.self_attn.decode(layer.input_layernorm(h), cos: cos, sin: sin, cache: cache, layer: l)
                let normed = layer.post_attention_layernorm(h)
                if let moe = layer.moe {
                    let (y, report) = moe(normed, training: nil, executor: experts, layer: l)
                    record?(l, report.routing.experts)
                    h = h + y
                } else {
                    h = h + layer.denseMLP!(normed)
                }
            }
            return h
        } }
    }
}

/// Greedy, temperature and nucleus (top-p) sampling; the draw for step i uses the counter
/// RNG at (seed, "sample", i), so a generation is reproducible.
package struct Sampler: Sendable {
    package var temperature: Float
    package var topP: Float
    package var seed: UInt64

    package init(temperature: Float = 0, topP: Float = 1, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topP = topP
        self.seed = seed
    }

    package func sample(_ logits: [Float], step: Int, row: Int = 0) -> Int {
        if temperature <= 0 {
            var best = 0
            for i in logits.indices where logits[i] > logits[best] { best = i }
            return best
        }
        let m = logits.max() ?? 0
        var p = logits.map { Foundation.exp(Double(($0 - m) / temperature)) }
        let z = p.reduce(0, +)
        p = p.map { $0 / z }
        var order = Array(p.indices).sorted { p[$0] > p[$1] }
        if topP < 1 {
            var acc = 0.0, keep = 0
            for i in order {
                acc += p[i]
                keep += 1
                if acc >= Double(topP) { break }
            }
            order = Array(order.prefix(keep))
        }
        let mass = order.reduce(0.0) { $0 + p[$1] }
        let u = Double(Philox(seed: seed, purpose: "sample", UInt64(row)).uniform(UInt64(step))) * mass
        var acc = 0.0
        for i in order {
            acc += p[i]
            if u < acc { return i }
        }
        return order.last ?? 0
    }
}

package struct GenerationResult: Sendable {
    package let tokens: [Int]
    package let prefillSeconds: Double
    package let decodeSeconds: Double
    package let cacheBytesPerToken: Int
}

extension DeepSeekForCausalLM {
    /// Prefills `prompt`, then samples up to `maxNew` tokens, stopping at any of `stop`.
    package func generate(prompt: [Int], maxNew: Int, sampler: Sampler = Sampler(), stop: Set<Int> = [],
                         cache kind: CacheKind = .latent) -> GenerationResult {
        let cache = KVCache(config, kind: kind, batch: 1, capacity: prompt.count + maxNew)
        let clock = now
        let t0 = clock()
        var logits = decode(prompt, batch: 1, cache: cache)
        let t1 = clock()
        var out: [Int] = []
        let v = config.vocabSize
        for step in 0..<maxNew {
            let last = Array(logits.values.suffix(v))
            let next = sampler.sample(last, step: step)
            if stop.contains(next) { break }
            out.append(next)
            if step + 1 == maxNew { break }
            logits = decode([next], batch: 1, cache: cache)
        }
        return GenerationResult(tokens: out, prefillSeconds: t1 - t0, decodeSeconds: clock() - t1,
                                cacheBytesPerToken: cache.bytesPerToken)
    }
}
