import Foundation
import Testing
@testable import DeepSeek
@testable import FileFormats
@testable import Autograd

@Suite struct BalanceLossTests {
    /// Two identical sequences of T = 2 tokens, K = 1, 4 experts on 2 devices, M = 1; both
    /// tokens pick expert 0. By hand: counts [2,0,0,0], f = N_r/(K·T)·count = [4,0,0,0],
    /// P = mean scores = [0.45, 0.2, 0.2, 0.15]; expert loss = 4·0.45 = 1.8;
    /// f' = [2, 0], P' = [0.65, 0.35] → device loss 1.3; f'' = D/(M·T)·[2, 0] = [2, 0] → 1.3.
    /// Gradients wrt s_{i,t}: expert 4/T = 2 on expert 0; device f'/T = 1 on experts 0, 1;
    /// communication f''/T = 1 on experts 0, 1; each then ÷ B for the mean over sequences.
    @Test func handComputedCase() {
        let seq: [Float] = [0.4, 0.3, 0.2, 0.1, 0.5, 0.1, 0.2, 0.2]
        let scores = Tensor(seq + seq, shape: [4, 4], requiresGrad: true)
        let alphas = BalanceLosses.Alphas(expert: 0.5, device: 0.25, communication: 0.125)
        let l = BalanceLosses.compute(scores: scores, experts: [0, 0, 0, 0], batch: 2, length: 2, k: 1,
                                      devices: 2, devicesPerToken: 1, alphas: alphas)
        #expect(abs(l.expert.item - 0.5 * 1.8) < 1e-6)
        #expect(abs(l.device.item - 0.25 * 1.3) < 1e-6)
        #expect(abs(l.communication.item - 0.125 * 1.3) < 1e-6)

        (l.expert + l.device + l.communication).backward()
        let g = scores.grad!.values
        // Per element: (α1·[2,0,0,0] + α2·[1,1,0,0] + α3·[1,1,0,0]) / B.
        let expectedRow: [Float] = [(0.5 * 2 + 0.25 + 0.125) / 2, (0.25 + 0.125) / 2, 0, 0]
        for t in 0..<4 {
            for i in 0..<4 { #expect(abs(g[t * 4 + i] - expectedRow[i]) < 1e-6, "token \(t) expert \(i): \(g[t * 4 + i])") }
        }
    }

    /// K = 2 spread evenly: every f is 1 and the losses are α·1, α·1, α·0.5.
    @Test func balancedRouting() {
        let scores = Tensor([0.4, 0.3, 0.2, 0.1, 0.1, 0.2, 0.3, 0.4], shape: [2, 4], requiresGrad: true)
        let l = BalanceLosses.compute(scores: scores, experts: [0, 1, 2, 3], batch: 1, length: 2, k: 2, devices: 2,
                                      devicesPerToken: 2, alphas: .init(expert: 1, device: 1, communication: 1))
        #expect(abs(l.expert.item - 1) < 1e-6 && abs(l.device.item - 1) < 1e-6 && abs(l.communication.item - 0.5) < 1e-6)
    }

    @Test func zeroAlphasCostNothing() {
        let scores = Tensor(repeating: 0.25, shape: [2, 4])
        let l = BalanceLosses.compute(scores: scores, experts: [0, 1, 2, 3], batch: 1, length: 2, k: 2, devices: 2,
                                      devicesPerToken: 2, alphas: .init(expert: 0, device: 0, communication: 0))
        #expect(l.expert.item == 0 && l.device.item == 0 && l.communication.item == 0)
    }
}

@Suite struct TokenDroppingTests {
    /// 6 tokens, K = 1, all on device 0 (experts 0, 1 of 4 on 2 devices): capacity
    /// ceil(1.0·6/2) = 3, so the 3 lowest-affinity assignments go, unless protected.
    @Test func dropsLowestAffinityAtCapacity() {
        let affinities: [Float] = [0.1, 0.9, 0.5, 0.3, 0.7, 0.2]
        var aff = [Float](repeating: 0, count: 6 * 4)
        for t in 0..<6 { aff[t * 4 + t % 2] = affinities[t] }
        let experts = (0..<6).map { $0 % 2 }
        let d = TokenDropping(capacityFactor: 1.0, neverDropFraction: 0)
        let plan = d.plan(affinity: aff, experts: experts, k: 1, numExperts: 4, devices: 2, protected: [Bool](repeating: false, count: 6))
        #expect(plan.capacity == 3)
        #expect(plan.kept == [false, true, true, false, true, false])
        #expect(plan.dropped == 3 && plan.deviceLoad == [3, 0])

        // Token 0 (the lowest) protected: the next-lowest unprotected one goes instead.
        var protected = [Bool](repeating: false, count: 6)
        protected[0] = true
        let p2 = d.plan(affinity: aff, experts: experts, k: 1, numExperts: 4, devices: 2, protected: protected)
        #expect(p2.kept == [true, true, false, false, true, false])
        #expect(p2.deviceLoad == [3, 0])

        // When protected assignments alone exceed capacity, they all stay (load above capacity).
        let all = d.plan(affinity: aff, experts: experts, k: 1, numExperts: 4, devices: 2, protected: [Bool](repeating: true, count: 6))
        #expect(all.dropped == 0 && all.deviceLoad == [6, 0])

        // A larger capacity factor drops nothing.
        let loose = TokenDropping(capacityFactor: 2.0, neverDropFraction: 0)
            .plan(affinity: aff, experts: experts, k: 1, numExperts: 4, devices: 2, protected: [Bool](repeating: false, count: 6))
        #expect(loose.dropped == 0)
    }

    @Test func neverDroppedSequencesAreAboutTenPercentAndDeterministic() {
        let d = TokenDropping()
        // 2500 micro-batches of 8 sequences: the quota is 0.8 per micro-batch, so 0 or 1 each.
        func picked(step: Int) -> [Bool] { (0..<2500).flatMap { d.neverDropped(seed: 3, step: step, first: $0 * 8, count: 8) } }
        let p = picked(step: 7)
        let fraction = Double(p.filter { $0 }.count) / Double(p.count)
        #expect(fraction > 0.09 && fraction < 0.11, "\(fraction)")
        #expect((0..<2500).allSatisfy { m in p[(m * 8)..<(m * 8 + 8)].filter { $0 }.count <= 1 })
        #expect(p == picked(step: 7))
        #expect(p != picked(step: 8))
        // 32 sequences: 3 or 4 (3.2 rounded stochastically).
        let q = d.neverDropped(seed: 3, step: 1, first: 64, count: 32).filter { $0 }.count
        #expect(q == 3 || q == 4)
    }

    /// In the model: no device above capacity except by protected assignments, protected tokens
    /// never dropped, and dropping nothing equals evaluation.
    @Test func modelRespectsCapacityAndProtection() {
        let c = DeepSeekConfig.tiny
        let model = DeepSeekForCausalLM(c, seed: 4)
        let b = 8, t = 16
        let ids = (0..<(b * t)).map { ($0 * 37 + 11) % c.vocabSize }
        let dropping = TokenDropping(capacityFactor: 1.0, neverDropFraction: 0.25)
        let training = MoETraining(alphas: .init(expert: 0, device: 0, communication: 0), dropping: dropping, seed: 9, step: 2)
        let out = withNoGrad { model.forward(ids, batch: b, length: t, training: training) }
        var droppedAny = false
        for (layer, r) in out.moe {
            let plan = r.drop!
            droppedAny = droppedAny || plan.dropped > 0
            let layerSeed = training.seed ^ (UInt64(layer) &* 0x9E37_79B9)
            let protected = dropping.neverDropped(seed: layerSeed, step: 2, first: 0, count: b)
            #expect(protected.filter { $0 }.count == 2)  // 0.25 × 8
            for slot in plan.kept.indices where !plan.kept[slot] {
                let seq = slot / c.numExpertsPerTok / t
                #expect(!protected[seq], "a never-dropped sequence lost a token")
            }
            // Load above capacity only from protected assignments.
            let per = c.nRoutedExperts / c.nGroup
            for dev in 0..<c.nGroup where plan.deviceLoad[dev] > plan.capacity {
                let unprotectedKept = plan.kept.indices.filter { s in
                    plan.kept[s] && r.routing.experts[s] / per == dev
                        && !protected[s / c.numExpertsPerTok / t]
                }
                #expect(unprotectedKept.isEmpty, "device \(dev) is over capacity with droppable assignments kept")
            }
        }
        #expect(droppedAny, "the test batch should overflow some device")
        let noDrop = MoETraining(alphas: .init(expert: 0, device: 0, communication: 0),
                                 dropping: TokenDropping(capacityFactor: 100, neverDropFraction: 0), seed: 9, step: 2)
        let a = withNoGrad { model.forward(ids, batch: b, length: t, training: noDrop).logits.values }
        let e = withNoGrad { model.forward(ids, batch: b, length: t).logits.values }
        #expect(a == e)
    }
}
