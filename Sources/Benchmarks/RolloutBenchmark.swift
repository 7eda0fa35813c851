import Foundation
import Autograd
import DeepSeek

/// `deeptrain bench generate --generations G --prompts P`: GRPO-shaped rollouts — G sampled
/// completions of each of P prompts on the latent cache — decoded one request at a time (each
/// completion its own prefill and batch-1 cache) and per prompt (one prefill, its cache copied
/// to G rows that decode together, as `ShardedInference.generate` does for GRPO).
package enum RolloutBenchmark {
    package struct Row: Codable, Sendable {
        package let decoding: String
        package let seconds: Double
        /// New tokens of all completions per second, prefills included.
        package let tokensPerSecond: Double

        enum CodingKeys: String, CodingKey {
            case decoding, seconds
            case tokensPerSecond = "tokens_per_s"
        }
    }

    package struct Report: Codable, Sendable {
        package var benchmark = "generate-rollouts"
        package var blasKernel = KernelSelection.current.kernel
        package let model: String
        package let prompts: Int
        package let generations: Int
        package let promptTokens: Int
        package let newTokens: Int
        package let temperature: Float
        package let threads: Int
        package let results: [Row]
        package let batchedOverOneAtATime: Double
        /// Whether both decodings drew the same tokens (the same sampler draws; a row's logits may
        /// differ in the last bits between a batch of 1 and of G).
        package let sameTokens: Bool

        enum CodingKeys: String, CodingKey {
            case benchmark
            case blasKernel = "blas_kernel"
            case model, prompts, generations
            case promptTokens = "prompt_tokens"
            case newTokens = "new_tokens"
            case temperature, threads, results
            case batchedOverOneAtATime = "batched_over_one_at_a_time"
            case sameTokens = "same_tokens"
        }
    }

    package static func run(config c: DeepSeekConfig = .tiny, name: String = "tiny", prompts p: Int = 16, generations g: Int = 8,
                            prompt: Int = 24, newTokens: Int = 12, temperature: Float = 1, threads: Int = 2) -> Report {
        Threads.set(threads)
        Profiler.withoutGradients = true
        let model = DeepSeekForCausalLM(c, seed: 1, positions: prompt + newTokens)
        let rng = Philox(seed: 2, purpose: "bench-rollouts")
        let prompts = (0..<p).map { i in (0..<prompt).map { Int(rng.uint64(UInt64(i * prompt + $0)) % UInt64(c.vocabSize)) } }
        let samplers = (0..<(p * g)).map { Sampler(temperature: temperature, seed: UInt64(1000 + $0)) }
        _ = perPrompt(model, [prompts[0]], generations: 2, newTokens: 2, samplers: samplers)  // warm up
        let t0 = now()
        let alone = oneAtATime(model, prompts, generations: g, newTokens: newTokens, samplers: samplers)
        let t1 = now()
        let batched = perPrompt(model, prompts, generations: g, newTokens: newTokens, samplers: samplers)
        let t2 = now()
        let tokens = Double(p * g * newTokens)
        let rows = [Row(decoding: "one_at_a_time", seconds: t1 - t0, tokensPerSecond: tokens / (t1 - t0)),
                    Row(decoding: "per_prompt_batch", seconds: t2 - t1, tokensPerSecond: tokens / (t2 - t1))]
        return Report(model: name, prompts: p, generations: g, promptTokens: prompt, newTokens: newTokens, temperature: temperature,
                      threads: threads, results: rows, batchedOverOneAtATime: (t1 - t0) / (t2 - t1), sameTokens: alone == batched)
    }

    /// Each completion alone: its own prefill, a batch-1 cache.
    static func oneAtATime(_ model: DeepSeekForCausalLM, _ prompts: [[Int]], generations g: Int, newTokens: Int,
                           samplers: [Sampler]) -> [[Int]] {
        prompts.indices.flatMap { i in
            (0..<g).map { j in
                model.generate(prompt: prompts[i], maxNew: newTokens, sampler: samplers[i * g + j], cache: .latent).tokens
            }
        }
    }

    /// Each prompt prefilled once, its cache copied to `g` rows decoded as one batch.
    static func perPrompt(_ model: DeepSeekForCausalLM, _ prompts: [[Int]], generations g: Int, newTokens: Int,
                          samplers: [Sampler]) -> [[Int]] {
        let v = model.config.vocabSize
        return prompts.indices.flatMap { i -> [[Int]] in
            let one = KVCache(model.config, kind: .latent, batch: 1, capacity: prompts[i].count + newTokens)
            var logits = model.decode(prompts[i], batch: 1, cache: one).contiguous()
            let cache = one.rows([Int](repeating: 0, count: g))
            var out = [[Int]](repeating: [], count: g)
            for step in 0..<newTokens {
                let t = logits.shape[1]
                let next = (0..<g).map { r in
                    let at = ((step == 0 ? 0 : r) * t + t - 1) * v
                    return samplers[i * g + r].sample(Array(UnsafeBufferPointer(start: logits.data + at, count: v)), step: step)
                }
                for r in 0..<g { out[r].append(next[r]) }
                if step + 1 == newTokens { break }
                logits = model.decode(next, batch: g, cache: cache).contiguous()
            }
            return out
        }
    }
}
