import Foundation
import Testing
import Autograd
@testable import Training

/// The reward model's pairwise loss against TRL 1.16's own `RewardTrainer.compute_loss`
/// (tools/golden_reward.py → Tests/Fixtures/reward/bradley_terry.json): with and without
/// margins and `center_rewards_coefficient`; the loss, both gradients, accuracy and margin.
@Suite struct BradleyTerryTests {
    nonisolated(unsafe) static let cases: [[String: Any]] = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/reward/bradley_terry.json")
        let json = try! JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        return json["cases"] as! [[String: Any]]
    }()

    func floats(_ x: Any?) -> [Float]? { (x as? [Double])?.map(Float.init) }

    @Test(arguments: 0..<6) func matchesTRL(_ i: Int) {
        let c = Self.cases[i], name = c["name"] as! String
        let chosen = Tensor(floats(c["chosen"])!, shape: [floats(c["chosen"])!.count], requiresGrad: true)
        let rejected = Tensor(floats(c["rejected"])!, shape: chosen.shape, requiresGrad: true)
        let bt = BradleyTerry(centerCoefficient: c["center_rewards_coefficient"] as? Double)
        let (loss, stats) = bt.loss(chosen: chosen, rejected: rejected, margins: floats(c["margins"]))
        loss.backward()
        #expect(abs(Double(loss.item) - (c["loss"] as! Double)) <= 1e-5, "\(name): loss \(loss.item) vs \(c["loss"]!)")
        for (got, want) in [(chosen, "grad_chosen"), (rejected, "grad_rejected")] {
            for (a, b) in zip(got.grad!.values, c[want] as! [Double]) { #expect(abs(Double(a) - b) <= 1e-6, "\(name): \(want) \(a) vs \(b)") }
        }
        #expect(abs(stats.correct / stats.pairs - (c["accuracy"] as! Double)) <= 1e-6, "\(name): accuracy")
        #expect(abs(stats.marginSum / stats.pairs - (c["margin"] as! Double)) <= 1e-5, "\(name): margin")
    }

    /// Far apart rewards neither overflow nor lose the gradient's sign.
    @Test func extremeRewardsStayFinite() {
        let chosen = Tensor([80, -80], shape: [2], requiresGrad: true), rejected = Tensor([-80, 80], shape: [2], requiresGrad: true)
        let (loss, stats) = BradleyTerry().loss(chosen: chosen, rejected: rejected)
        loss.backward()
        #expect(abs(loss.item - 80) < 1e-3 && stats.correct == 1)
        #expect(chosen.grad!.values[1] < 0 && rejected.grad!.values[1] > 0 && chosen.grad!.values.allSatisfy(\.isFinite))
    }
}
