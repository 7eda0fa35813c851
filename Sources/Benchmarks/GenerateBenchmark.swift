import Foundation
import Autograd
import DeepSeek

/// `deeptrain bench generate`: decoding speed and cache size of the latent (MLA) cache
/// against a full per-head K/V cache of the same model and weights.
public enum GenerateBenchmark {
    public struct Row: Codable, Sendable {
        public let cache: String
        public let prefill_tokens_per_s: Double
        public let decode_tokens_per_s: Double
        public let cache_bytes_per_token: Int
        public let cache_bytes_per_token_per_layer: Int
    }

    public struct Report: Codable, Sendable {
        public var benchmark = "generate"
        public var blas_kernel = KernelSelection.current.kernel
        public let model: String
        public let prompt_tokens: Int
        public let new_tokens: Int
        public let threads: Int
        public let results: [Row]
        public let latent_over_full_cache_bytes: Double
        public let same_tokens: Bool
    }

    public static func run(config c: DeepSeekV2Config = .small, name: String = "small", prompt: Int = 64, newTokens: Int = 128,
                           threads: Int = 2) -> Report {
        Threads.set(threads)
        let model = DeepSeekV2ForCausalLM(c, seed: 1, positions: prompt + newTokens)
        let ids = (0..<prompt).map { Int(Philox(seed: 2, purpose: "bench-generate").uint64(UInt64($0)) % UInt64(c.vocabSize)) }
        _ = model.generate(prompt: Array(ids.prefix(8)), maxNew: 4)  // warm up
        var rows: [Row] = []
        var outputs: [[Int]] = []
        for kind in CacheKind.allCases {
            let r = model.generate(prompt: ids, maxNew: newTokens, cache: kind)
            outputs.append(r.tokens)
            rows.append(Row(cache: kind.rawValue, prefill_tokens_per_s: Double(prompt) / r.prefillSeconds,
                            decode_tokens_per_s: Double(r.tokens.count) / r.decodeSeconds,
                            cache_bytes_per_token: r.cacheBytesPerToken,
                            cache_bytes_per_token_per_layer: r.cacheBytesPerToken / c.numHiddenLayers))
        }
        return Report(model: name, prompt_tokens: prompt, new_tokens: newTokens, threads: threads, results: rows,
                      latent_over_full_cache_bytes: Double(rows[0].cache_bytes_per_token) / Double(rows[1].cache_bytes_per_token),
                      same_tokens: outputs[0] == outputs[1])
    }
}
