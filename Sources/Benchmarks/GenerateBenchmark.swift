import Foundation
import Autograd
import DeepSeek

/// `deeptrain bench generate`: decoding speed and cache size of the latent (MLA) cache
/// against a full per-head K/V cache of the same model and weights.
package enum GenerateBenchmark {
    package struct Row: Codable, Sendable {
        package let cache: String
        package let prefillTokensPerSecond: Double
        /// Tokens of the decoding steps (the first new token comes from the prefill's logits).
        package let decodeTokensPerSecond: Double
        /// New tokens over prefill + decoding, the way `tools/bench_pytorch.py` times HF `generate`.
        package let endToEndTokensPerSecond: Double
        package let cacheBytesPerToken: Int
        package let cacheBytesPerTokenPerLayer: Int

        enum CodingKeys: String, CodingKey {
            case cache
            case prefillTokensPerSecond = "prefill_tokens_per_s"
            case decodeTokensPerSecond = "decode_tokens_per_s"
            case endToEndTokensPerSecond = "end_to_end_tokens_per_s"
            case cacheBytesPerToken = "cache_bytes_per_token"
            case cacheBytesPerTokenPerLayer = "cache_bytes_per_token_per_layer"
        }
    }

    package struct Report: Codable, Sendable {
        package var benchmark = "generate"
        package var blasKernel = KernelSelection.current.kernel
        package let model: String
        /// Sequences decoded together (one forward of [batch, 1] per step).
        package let batch: Int
        package let promptTokens: Int
        package let newTokens: Int
        package let threads: Int
        package let results: [Row]
        package let latentOverFullCacheBytes: Double
        package let sameTokens: Bool

        enum CodingKeys: String, CodingKey {
            case benchmark
            case blasKernel = "blas_kernel"
            case model
            case batch
            case promptTokens = "prompt_tokens"
            case newTokens = "new_tokens"
            case threads
            case results
            case latentOverFullCacheBytes = "latent_over_full_cache_bytes"
            case sameTokens = "same_tokens"
        }
    }

    package static func run(config c: DeepSeekConfig = .small, name: String = "small", prompt: Int = 64, newTokens: Int = 128,
                           batch: Int = 1, threads: Int = 2) -> Report {
        Threads.set(threads)
        Profiler.withoutGradients = true  // decoding's ops record no gradient
        let model = DeepSeekForCausalLM(c, seed: 1, positions: prompt + newTokens)
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
            rows.append(Row(cache: kind.rawValue, prefillTokensPerSecond: Double(batch * prompt) / r.prefill,
                            decodeTokensPerSecond: Double(batch * (newTokens - 1)) / r.decode,
                            endToEndTokensPerSecond: Double(r.tokens.count) / (r.prefill + r.decode),
                            cacheBytesPerToken: r.bytesPerToken,
                            cacheBytesPerTokenPerLayer: r.bytesPerToken / c.numHiddenLayers))
        }
        return Report(model: name, batch: batch, promptTokens: prompt, newTokens: newTokens, threads: threads, results: rows,
                      latentOverFullCacheBytes: Double(rows[0].cacheBytesPerToken) / Double(rows[1].cacheBytesPerToken),
                      sameTokens: outputs[0] == outputs[1])
    }

    /// Greedy decoding of `batch` prompts of equal length at once: one forward of [B, 1] per
    /// step. Tokens/s counts every row's tokens.
    static func greedy(_ model: DeepSeekForCausalLM, _ ids: [Int], batch b: Int, newTokens: Int,
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
