import Foundation
import Testing
import Autograd
@testable import Training

/// The GRPO objective against TRL 1.16's own `_compute_loss` and advantage formula
/// (tools/golden_grpo.py → Tests/Fixtures/grpo/grpo_loss.json): all eight loss types, with and
/// without the KL term, at μ = 1 and μ = 2, token- and sequence-level ratios (GSPO), and only
/// the highest-entropy tokens trained, and with the sampling pass's importance weights.
@Suite struct GRPOObjectiveTests {
    nonisolated(unsafe) static let fixture: [String: Any] = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/grpo/grpo_loss.json")
        return try! JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    }()
    static var cases: [[String: Any]] { fixture["cases"] as! [[String: Any]] }

    func floats(_ x: Any?) -> [Float]? { (x as? [Double])?.map(Float.init) }

    func run(_ c: [String: Any]) -> (loss: Tensor, grad: [Float], stats: GRPOObjective.Stats, adv: [Double]) {
        let rows = c["rows"] as! Int, t = c["length"] as! Int
        let objective = GRPOObjective(lossType: .init(rawValue: c["loss_type"] as! String)!, beta: c["beta"] as! Double,
                                      epsilonLow: c["epsilon_low"] as! Double, epsilonHigh: c["epsilon_high"] as! Double,
                                      maxCompletionLength: c["max_completion_length"] as! Int,
                                      importanceSampling: .init(rawValue: c["importance_sampling_level"] as! String)!,
                                      topEntropyQuantile: c["top_entropy_quantile"] as! Double)
        let (adv, _) = GRPOObjective.advantages(c["rewards"] as! [Double], groupSize: c["group_size"] as! Int)
        let logps = Tensor(floats(c["logps"])!, shape: [rows, t], requiresGrad: true)
        let mask = floats(c["mask"])!
        let beta = c["beta"] as! Double
        var correction: [Float]? = nil
        if let mode = c["importance_sampling_mode"] as? String {
            let weighting = SamplingCorrection(mode: .init(rawValue: mode)!, clipMin: c["importance_sampling_clip_min"] as? Double,
                                        clipMax: c["importance_sampling_clip_max"] as? Double)
            correction = weighting.weights(old: floats(c["old_logps"])!, sample: floats(c["sampling_logps"])!, mask: mask, rows: rows, t: t)
        }
        let (loss, stats) = objective.loss(logps, old: floats(c["old_logps"]), ref: beta == 0 ? nil : floats(c["ref_logps"]),
                                           entropies: floats(c["entropies"]), correction: correction, advantages: adv.map(Float.init), mask: mask, totalRows: rows, microbatches: 1,
                                           totalTokens: Double(mask.reduce(0, +)))
        loss.backward()
        return (loss, Array(UnsafeBufferPointer(start: logps.grad!.data, count: rows * t)), stats, adv)
    }

    @Test(arguments: 0..<36) func matchesTRL(_ i: Int) {
        let c = Self.cases[i]
        let (loss, grad, stats, adv) = run(c)
        let name = c["name"] as! String
        for (a, b) in zip(adv, c["advantages"] as! [Double]) { #expect(abs(a - b) <= 1e-6, "\(name): advantage \(a) vs \(b)") }
        #expect(abs(Double(loss.item) - (c["loss"] as! Double)) <= 1e-6, "\(name): loss \(loss.item) vs \(c["loss"]!)")
        for (a, b) in zip(grad, c["grad"] as! [Double]) { #expect(abs(Double(a) - b) <= 1e-6, "\(name): gradient \(a) vs \(b)") }
        if let kl = c["kl"] as? Double { #expect(abs(stats.klSum / stats.tokens - kl) <= 1e-6, "\(name): kl") }
        if let clip = (c["clip_region"] as? Double) ?? (c["cispo_clip"] as? Double) {
            #expect(abs(stats.clipped / stats.clipCount - clip) <= 1e-6, "\(name): clip fraction")
        }
        #expect(abs(stats.entropySum / stats.tokens - (c["entropy"] as! Double)) <= 1e-5, "\(name): entropy")
    }

    /// At μ = 1 and β = 0 the `grpo` loss is zero — advantages are centred in each group and
    /// ρ = 1 — while its gradient is −A_i / (n·|o_i|) per token: not zero (docs/grpo.md).
    @Test func valueIsZeroButGradientIsNotAtOneUpdateWithoutKL() {
        let c = Self.cases.first { $0["name"] as! String == "grpo-mu1-beta0" }!
        let (loss, grad, _, _) = run(c)
        #expect(abs(loss.item) < 1e-7)
        #expect(grad.map { $0 * $0 }.reduce(0, +).squareRoot() > 0.05)
    }

    /// Every loss type TRL accepts has a golden case; the ones TRL reads at both levels have both.
    @Test func fixtureCoversEveryLossTypeAndLevel() {
        let types = Set(Self.cases.map { $0["loss_type"] as! String })
        #expect(types == Set(GRPOObjective.LossType.allCases.map(\.rawValue)))
        #expect(Set(Self.cases.map { $0["importance_sampling_level"] as! String }) == ["token", "sequence"])
        #expect(Self.cases.contains { ($0["top_entropy_quantile"] as! Double) < 1 })
        #expect(Set(Self.cases.compactMap { $0["importance_sampling_mode"] as? String }) == Set(SamplingCorrection.Mode.allCases.map(\.rawValue)))
        #expect(Self.cases.count == 36)
    }

    /// The entropy mask keeps the top share of the trained tokens: at q = 0 only the highest
    /// (ties kept), at q = 0.5 the upper half; untrained tokens never.
    @Test func highEntropyMaskKeepsTheTopShare() {
        var o = GRPOObjective(lossType: .dapo, beta: 0, epsilonLow: 0.2, epsilonHigh: 0.2, maxCompletionLength: 4)
        let e: [Float] = [0.5, 3, 1, 2, 9, 4], mask: [Float] = [1, 1, 1, 1, 0, 1]
        o.topEntropyQuantile = 0
        #expect(o.highEntropyTokens(e, mask: mask) == [0, 0, 0, 0, 0, 1])
        o.topEntropyQuantile = 0.5
        #expect(o.highEntropyTokens(e, mask: mask) == [0, 1, 0, 1, 0, 1])
        o.topEntropyQuantile = 1
        #expect(o.highEntropyTokens(e, mask: mask) == mask)
    }

    @Test func groupsWithoutSpreadHaveNoAdvantage() {
        let (adv, zero) = GRPOObjective.advantages([1, 1, 1, 1, 0, 1, 0, 0.5], groupSize: 4)
        #expect(zero == [true, false])
        #expect(adv.prefix(4).allSatisfy { $0 == 0 })
        #expect(abs(adv.suffix(4).reduce(0, +)) < 1e-12)
    }
}
