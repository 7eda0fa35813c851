import Foundation
import Autograd
import DeepSeek

/// `deeptrain bench generate`: decoding speed and cache size of the latent (MLA) cache
/// against a full per-head K/V cache of the same model and weights.
public enum GenerateBenchmark {
    public struct Row: Codable, Sendable {
        public let cache: String
        public let prefill_tokens_per_s: Double
        /// Tokens of the decoding steps (the first new token comes from the prefill's logits).
        public let decode_tokens_per_s: Double
        /// New tokens over prefill + decoding, the way `tools/bench_pytorch.py` times HF `generate`.
        public let end_to_end_tokens_per_s: Double
        public let cache_bytes_per_token: Int
        public let cache_bytes_per_token_per_layer: Int
    }

    public struct Report: Codable, Sendable {
        public var benchmark = "generate"
        public var blas_kernel = KernelSelection.current.kernel
        public let model: String
        /// Sequences decoded together (one forward of [batch, 1] per step).
        public let batch: Int
        public let prompt_tokens: Int
        public let new_tokens: Int
        public let threads: Int
        public let results: [Row]
        public let latent_over_full_cache_bytes: Double
        public let same_tokens: Bool
    }

    public static func run(config c: DeepSeekV2Config = .small, name: String = "small", prompt: Int = 64, newTokens: Int = 128,
                           batch: Int = 1, threads: Int = 2) -> Report {
        Threads.set(threads)
        Profiler.withoutGradients = true  // decoding's ops record no gradient
        let model = DeepSeekV2ForCausalLM(c, seed: 1, positions: prompt + newTokens)
        let rng = Philox(seed: 2, purpose: "bench-generate")
        let ids = (0..<(batch * prompt)).map { Int(rng.uint64(UInt64($0)) % UInt64(c.vocabSize)) }
        _ = greedy(model, ids, batch: batch, newTokens: 4, kind: .latent)  // warm up
        var rows: [Row] = []
        var outputs: [[Int]] = []
        for kind in CacheKind.allCases {
            let r = greedy(model, ids, batch: batch, newTokens: newTokens, kind: kind)
            if Profiler.isEnabled {
                // The decoding steps' ops and GEMMs per token step (prefill excluded).
                FileHandle.standardError.write(Data("\(kind.rawValue) cache, per decoding step:\n\(Profiler.report(steps: newTokens - 1, digits: 3))\n\n\(Profiler.gemmReport(steps: newTokens - 1, digits: 3))\n\n".utf8))
            }
            outputs.append(r.tokens)
            rows.append(Row(cache: kind.rawValue, prefill_tokens_per_s: Double(batch * prompt) / r.prefill,
                            decode_tokens_per_s: Double(batch * (newTokens - 1)) / r.decode,
                            end_to_end_tokens_per_s: Double(r.tokens.count) / (r.prefill + r.decode),
                            cache_bytes_per_token: r.bytesPerToken,
                            cache_bytes_per_token_per_layer: r.bytesPerToken / c.numHiddenLayers))
        }
        return Report(model: name, batch: batch, prompt_tokens: prompt, new_tokens: newTokens, threads: threads, results: rows,
                      latent_over_full_cache_bytes: Double(rows[0].cache_bytes_per_token) / Double(rows[1].cache_bytes_per_token),
                      same_tokens: outputs[0] == outputs[1])
    }

    /// Greedy decoding of `batch` prompts of equal length at once: one forward of [B, 1] per
    /// step. Tokens/s counts every row's tokens.
    static func greedy(_ model: DeepSeekV2ForCausalLM, _ ids: [Int], batch b: Int, newTokens: Int,
                       kind: CacheKind) -> (tokens: [Int], prefill: Double, decode: Double, bytesPerToken: Int) {
        let p = ids.count / b, v = model.config.vocabSize
        let cache = KVCache(model.config, kind: kind, batch: b, capacity: p + newTokens)
        Profiler.reset()
        Profiler.mark()
        let t0 = now()
        var logits = model.decode(ids, batch: b, cache: cache)
        let t1 = now()
        if Profiler.isEnabled {
            FileHandle.standardError.write(Data("\(kind.rawValue) cache, prefill:\n\(Profiler.report(steps: 1, digits: 3))\n\n\(Profiler.gemmReport(steps: 1, digits: 3))\n\n".utf8))
        }
        Profiler.reset()
        Profiler.mark()
        var out: [Int] = []
        for step in 0..<newTokens {
            let values = logits.contiguous().values, rows = values.count / (b * v)
            let next = (0..<b).map { r in
                let base = (r * rows + rows - 1) * v
                var best = 0
                for j in 1..<v where values[base + j] > values[base + best] { best = j }
                return best
            }
            out += next
            if step + 1 == newTokens { break }
            logits = model.decode(next, batch: b, cache: cache)
        }
        return (out, t1 - t0, now() - t1, cache.bytesPerToken)
    }
}
