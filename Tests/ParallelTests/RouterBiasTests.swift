import Foundation
import Testing
@testable import Parallel
@testable import DeepSeek
import Autograd
import Optim

/// Aux-loss-free balancing (V3): the update rule, and a tiny V3 model trained from a router
/// that sends every token to experts 0 and 1 — with the bias moving, max/mean load falls toward
/// 1; with it still, the imbalance stays.
@Suite(.serialized) struct RouterBiasTests {
    @Test func theRuleMovesEachBiasByGammaTowardTheMean() {
        let b = Tensor([0, 0, 0, 0], shape: [4])
        RouterBias.update(b, counts: [8, 2, 5, 5], speed: 0.5)
        #expect(b.values == [-0.5, 0.5, 0, 0])  // mean 5: above it down, below it up
        #expect(RouterBias.imbalance([10, 2, 4, 4]) == 2)
        #expect(RouterBias.imbalance([0, 0]) == 0)
    }

    func train(speed: Float, steps: Int) throws -> (imbalance: [Double], bias: [Float]) {
        let c = DeepSeekConfig.tinyV3
        let rows = 8, t = 32, micros = 2
        let model = DeepSeekForCausalLM(c, seed: 5, positions: t)
        // Sigmoid scores near 0.5 differ by hundredths: a bias of 0.2 on experts 0 and 1 makes
        // them every token's choice.
        for (_, _, b) in model.routerBiases { b.data[0] = 0.2; b.data[1] = 0.2 }
        let grid = try ProcessGrid(layout: Layout(dp: 1, ep: 1, pp: 1, microbatches: micros), world: .solo, layers: c.numHiddenLayers)
        let trainer = GridTrainer(model: model, grid: grid, adam: AdamW.Config(), clip: 1,
                                      alphas: .init(expert: 0, device: 0, communication: 0), dropping: nil, seed: 0)
        trainer.biasUpdateSpeed = speed
        var imbalance: [Double] = []
        for s in 0..<steps {
            let r = try trainer.step(batch: { m in
                let tokens = (0..<(rows * (t + 1))).map { (($0 + 1) * 2_654_435_761 &+ (s * micros + m) * 97) % c.vocabSize }
                return GridTrainer.MicroBatch(rows: tokens, rows: rows, length: t, firstSequence: (s * micros + m) * rows)
            }, rows: rows, length: t, lr: 1e-3, step: s)
            imbalance.append(r.loadImbalance.reduce(0, +) / Double(r.loadImbalance.count))
        }
        return (imbalance, model.routerBiases[0].bias.values)
    }

    @Test func loadImbalanceFallsWithTheBiasMovingAndNotWithout() throws {
        let on = try train(speed: 0.02, steps: 24), off = try train(speed: 0, steps: 24)
        print("max/mean expert load, bias on: \(on.imbalance.map { String(format: "%.2f", $0) }.joined(separator: " "))")
        print("max/mean expert load, bias off: \(off.imbalance.map { String(format: "%.2f", $0) }.joined(separator: " "))")
        #expect(on.imbalance[0] >= 3.5, "experts 0 and 1 should take nearly every token at first: \(on.imbalance[0])")
        #expect(on.imbalance.suffix(6).allSatisfy { $0 <= 1.8 }, "\(on.imbalance)")
        #expect(off.imbalance.suffix(4).allSatisfy { $0 >= 0.9 * off.imbalance[0] }, "\(off.imbalance)")
        #expect(on.bias[0] < 0.2 && off.bias[0] == 0.2)
    }
}
