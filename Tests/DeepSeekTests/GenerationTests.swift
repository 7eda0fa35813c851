import Foundation
import Testing
@testable import DeepSeek
@testable import FileFormats
@testable import Checkpoint
@testable import Autograd

@Suite struct GenerationTests {
    /// Cached decoding, token by token and after a multi-token prefill, gives the full
    /// forward's logits at every position, with the latent cache and with the full cache.
    @Test(arguments: GoldenModelTests.cases, CacheKind.allCases)
    func cachedLogitsEqualFullForward(_ name: String, _ kind: CacheKind) throws {
        let dir = "\(GoldenModelTests.root)/\(name)"
        let model = try HFDirectory.load(dir, positions: 64)
        let (all, shape) = try SafeTensorsFile(path: "\(dir)/input.safetensors").integers("input_ids")
        let t = shape[1], ids = Array(all.prefix(t))  // first sequence: longer than YaRN's original 16
        let full = withNoGrad { model.forward(ids, batch: 1, length: t).logits.values }
        let v = model.config.vocabSize
        for prefill in [1, 10] {
            let cache = KVCache(model.config, kind: kind, batch: 1, capacity: t)
            var got = model.decode(Array(ids.prefix(prefill)), batch: 1, cache: cache).values
            for i in prefill..<t { got += model.decode([ids[i]], batch: 1, cache: cache).values }
            var worst: Float = 0, at = 0
            for i in 0..<(t * v) where abs(got[i] - full[i]) > worst { worst = abs(got[i] - full[i]); at = i / v }
            #expect(worst <= 1e-4, "\(name) \(kind) prefill \(prefill): max|Δ| \(worst) at position \(at)")
        }
    }

    /// Both fixture sequences decoded together (one [2, Tn] forward a step) give each one's full
    /// forward logits: the decoding ops keep sequences apart.
    @Test(arguments: GoldenModelTests.cases, CacheKind.allCases)
    func batchedCachedLogitsEqualFullForward(_ name: String, _ kind: CacheKind) throws {
        let dir = "\(GoldenModelTests.root)/\(name)"
        let model = try HFDirectory.load(dir, positions: 64)
        let (ids, shape) = try SafeTensorsFile(path: "\(dir)/input.safetensors").integers("input_ids")
        let b = shape[0], t = shape[1], v = model.config.vocabSize, prefill = 5
        #expect(b == 2)
        let full = withNoGrad { model.forward(ids, batch: b, length: t).logits.values }
        let cache = KVCache(model.config, kind: kind, batch: b, capacity: t)
        let first = model.decode((0..<b).flatMap { ids[($0 * t)..<($0 * t + prefill)] }, batch: b, cache: cache).values
        var got = [Float](repeating: .nan, count: b * t * v)
        for r in 0..<b { for i in 0..<prefill { for j in 0..<v { got[(r * t + i) * v + j] = first[(r * prefill + i) * v + j] } } }
        for i in prefill..<t {
            let step = model.decode((0..<b).map { ids[$0 * t + i] }, batch: b, cache: cache).values
            for r in 0..<b { for j in 0..<v { got[(r * t + i) * v + j] = step[r * v + j] } }
        }
        var worst: Float = 0
        for i in 0..<(b * t * v) where !(abs(got[i] - full[i]) <= worst) { worst = abs(got[i] - full[i]) }  // NaN shows
        #expect(worst <= 1e-4, "\(name) \(kind) batch \(b): max|Δ| \(worst)")
    }

    /// Decoding gives the same bits with one thread as with two (the decoding worker taking
    /// half of each few-row projection, the experts' and the heads' tasks): the splits are the
    /// same whichever thread runs them. `small`, so that projections are wide enough to split.
    @Test(arguments: CacheKind.allCases)
    func decodingBitsDoNotDependOnTheThreadCount(_ kind: CacheKind) {
        let model = DeepSeekForCausalLM(.small, seed: 1, positions: 32)
        let v = model.config.vocabSize, saved = Threads.count
        func run(threads: Int, batch: Int) -> [UInt32] {
            Threads.set(threads)
            defer { Threads.set(saved) }
            let cache = KVCache(model.config, kind: kind, batch: batch, capacity: 24)
            var out = model.decode((0..<(batch * 16)).map { ($0 * 37) % v }, batch: batch, cache: cache).values
            for s in 0..<6 { out += model.decode((0..<batch).map { (s * 11 + $0 * 5) % v }, batch: batch, cache: cache).values }
            return out.map(\.bitPattern)
        }
        for b in [1, 3] {
            let one = run(threads: 1, batch: b), two = run(threads: 2, batch: b)
            let differ = one.count == two.count ? one.indices.filter { one[$0] != two[$0] } : []
            #expect(one.count == two.count && differ.isEmpty,
                    "\(kind) batch \(b): \(differ.count) of \(one.count) logits differ, the first in row \((differ.first ?? 0) / v)")
        }
    }

    @Test func latentCacheStoresKvLoraPlusRopePerLayer() {
        let c = DeepSeekConfig.small
        let latent = KVCache(c, kind: .latent, batch: 1, capacity: 4), full = KVCache(c, kind: .full, batch: 1, capacity: 4)
        #expect(latent.bytesPerToken == c.numHiddenLayers * (c.kvLoraRank + c.qkRopeHeadDim) * 4)
        #expect(full.bytesPerToken == c.numHiddenLayers * c.numAttentionHeads * (c.qHeadDim + c.vHeadDim) * 4)
    }

    @Test func samplingIsReproducibleAndGreedyIsArgmax() {
        let logits: [Float] = [0.1, 2.0, -1.0, 1.9]
        #expect(Sampler().sample(logits, step: 0) == 1)
        let s = Sampler(temperature: 1.0, topP: 0.9, seed: 5)
        let draws = (0..<200).map { s.sample(logits, step: $0) }
        #expect(draws == (0..<200).map { s.sample(logits, step: $0) })
        #expect(!draws.contains(2), "top-p 0.9 excludes the least likely token")
        #expect(Set(draws).isSuperset(of: [1, 3]))
    }

    @Test func generateStopsAtStopToken() {
        let model = DeepSeekForCausalLM(.tiny, seed: 2)
        let r = model.generate(prompt: [1, 2, 3], maxNew: 12)
        #expect(r.tokens.count == 12)
        let stopAt = r.tokens[4]
        let stopped = model.generate(prompt: [1, 2, 3], maxNew: 12, stop: [stopAt])
        #expect(stopped.tokens == Array(r.tokens.prefix(while: { $0 != stopAt })))
    }
}

@Suite struct PlanTests {
    @Test func papersFigures() {
        let lite = ModelPlan(.v2Lite, sequenceLength: 4096), v2 = ModelPlan(.v2, sequenceLength: 4096)
        #expect(abs(Double(lite.totalParameters) / 15.7e9 - 1) < 0.01)
        #expect(abs(Double(v2.totalParameters) / 236e9 - 1) < 0.01)
        #expect(abs(Double(v2.activatedParameters) / 21e9 - 1) < 0.01)
        // 2.451B: DeepSeek reports "2.4B" (see docs/model.md for the counting).
        #expect(abs(Double(lite.activatedParameters) / 2.4e9 - 1) < 0.025)
        #expect(lite.kvCacheValuesPerTokenPerLayer == 576 && v2.kvCacheValuesPerTokenPerLayer == 576)
        #expect(v2.kvCacheBytesPerTokenBF16 == 60 * 576 * 2)
        #expect(v2.mhaCacheBytesPerTokenBF16 == 60 * 128 * 2 * 128 * 2)
    }

    @Test func countsMatchTheBuiltModel() {
        for c in [DeepSeekConfig.tiny, .small] {
            let model = DeepSeekForCausalLM(c, seed: 1, positions: 8)
            #expect(ModelPlan(c, sequenceLength: 8).totalParameters == model.parameterCount)
        }
    }
}
