import Foundation
import Testing
@testable import DeepSeek
@testable import FileFormats
@testable import Autograd

/// The MTP loss's gradient against central finite differences: the depth's own weights
/// (enorm, hnorm, eh_proj, its block, shared_head.norm) and the weights it shares with the
/// main model (the embedding, the head, the final norm). The block is dense here so that no
/// routing decision flips under a perturbation.
@Suite struct MultiTokenPredictionTests {
    static func model() -> DeepSeekForCausalLM {
        var c = DeepSeekConfig.tinyV3
        c.numHiddenLayers = 2
        c.firstKDenseReplace = 3  // the MTP block (layer 2) is dense
        c.vocabSize = 32
        c.intermediateSize = 24
        c.numNextnPredictLayers = 2
        let m = DeepSeekForCausalLM(c, seed: 11, positions: 16)
        // Larger than the init's 0.02: gradients well above the float32 noise of the loss.
        for (_, p) in m.namedParameters() where p.rank >= 2 { for i in 0..<p.count { p.data[i] *= 8 } }
        return m
    }

    @Test func gradientsMatchFiniteDifferences() throws {
        let model = Self.model()
        let b = 2, t = 10
        let ids = (0..<(b * t)).map { ($0 * 7 + 3) % 32 }
        let targets = DeepSeekForCausalLM.shiftedTargets(ids, batch: b, length: t)
        func loss() -> Tensor {
            let out = model.forward(ids, batch: b, length: t)
            return model.mtpLoss(normed: out.normed, ids: ids, targets: targets, batch: b, length: t)!.loss
        }
        let l = loss()
        #expect(l.item.isFinite && l.item > 0)
        model.zeroGrad()
        l.backward()
        let mtp = try #require(model.mtp)
        let checked: [(String, Tensor)] = [
            ("eh_proj", mtp.depths[0].eh_proj.weight), ("enorm", mtp.depths[0].enorm.weight),
            ("hnorm", mtp.depths[1].hnorm.weight), ("shared_head.norm", mtp.depths[1].shared_head.norm.weight),
            ("depth-2 kv_b_proj", mtp.depths[1].self_attn.kv_b_proj.weight), ("embed_tokens", model.model.embed_tokens.weight),
            ("lm_head", model.lm_head.weight), ("model.norm", model.model.norm.weight),
        ]
        var rng = SplitMix(seed: 5)
        for (name, p) in checked {
            let g = try #require(p.grad, "\(name) got no gradient").values
            // The entries with the largest gradients, and a few at random.
            let top = g.indices.sorted { abs(g[$0]) > abs(g[$1]) }.prefix(4)
            for i in Array(top) + (0..<3).map({ _ in Int(rng.next() % UInt64(p.count)) }) {
                let saved = p.data[i], h: Float = 1e-2
                p.data[i] = saved + h
                let plus = withNoGrad { Double(loss().item) }
                p.data[i] = saved - h
                let minus = withNoGrad { Double(loss().item) }
                p.data[i] = saved
                let numeric = (plus - minus) / Double(2 * h)
                let err = abs(numeric - Double(g[i]))
                #expect(err <= 2e-3 + 3e-2 * abs(numeric), "\(name)[\(i)]: analytic \(g[i]), numeric \(numeric)")
            }
        }
    }

    /// Depth k predicts the token k + 1 ahead: the last k + 1 positions of a row carry no loss,
    /// and a target that is ignoreIndex in the main loss is ignored at every depth.
    @Test func depthsReadAheadAndRespectIgnoredTargets() throws {
        let model = Self.model()
        let b = 1, t = 6
        let ids = [1, 2, 3, 4, 5, 6]
        var targets = DeepSeekForCausalLM.shiftedTargets(ids, batch: b, length: t)
        let out = withNoGrad { model.forward(ids, batch: b, length: t) }
        let all = try #require(withNoGrad { model.mtpLoss(normed: out.normed, ids: ids, targets: targets, batch: b, length: t) })
        #expect(all.perDepth.count == 2)
        // Masking every target beyond position 2 leaves depth 1 one prediction (token 3 from position 1)...
        for i in 3..<t { targets[i] = ignoreIndex }
        let masked = try #require(withNoGrad { model.mtpLoss(normed: out.normed, ids: ids, targets: targets, batch: b, length: t) })
        #expect(masked.perDepth[0].item.isFinite && masked.perDepth[0].item != all.perDepth[0].item)
        // ... and a depth limit runs fewer depths.
        let one = try #require(withNoGrad { model.mtpLoss(normed: out.normed, ids: ids, targets: targets, batch: b, length: t, depth: 1) })
        #expect(one.perDepth.count == 1)
    }
}

struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
