import Testing
@testable import DeepSeek
@testable import FileFormats
@testable import Autograd

/// The fused expert op against finite differences, for the input, the gate weights and the
/// stacked expert weights, with an expert that receives no token and a dropped assignment.
@Suite struct ExpertFFNTests {
    @Test func gradientsMatchFiniteDifferences() {
        let n = 5, d = 4, inter = 3, e = 3
        let experts = StackedExperts(experts: e, hidden: d, intermediate: inter)
        for (i, t) in [experts.gate, experts.up, experts.down].enumerated() {
            Philox(seed: 10 + UInt64(i)).fillNormal(t, std: 0.5)
        }
        let x = Tensor.randn([n, d], rng: Philox(seed: 1), requiresGrad: true)
        let w = Tensor.randn([n * 2], rng: Philox(seed: 2), requiresGrad: true)
        // K = 2; expert 2 gets nothing; token 4's second assignment (slot 9) is dropped.
        let assignments: [[(token: Int, slot: Int)]] = [
            [(0, 0), (1, 2), (3, 6), (4, 8)],
            [(0, 1), (1, 3), (2, 4), (2, 5), (3, 7)],
            [],
        ]
        let probe = Tensor.randn([n, d], rng: Philox(seed: 3))
        func objective() -> Double {
            let o = Tensor.expertFFN(x, weights: w, experts: experts, assignments: assignments).values, p = probe.values
            return zip(o, p).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
        (Tensor.expertFFN(x, weights: w, experts: experts, assignments: assignments) * probe).sum().backward()
        for (name, t, g) in [("x", x, x.grad!), ("weights", w, w.grad!), ("gate", experts.gate, experts.gate.grad!),
                             ("up", experts.up, experts.up.grad!), ("down", experts.down, experts.down.grad!)] {
            let analytic = g.values
            for i in 0..<t.count {
                let saved = t.data[i], h: Float = 1e-2
                t.data[i] = saved + h
                let plus = withNoGrad { objective() }
                t.data[i] = saved - h
                let minus = withNoGrad { objective() }
                t.data[i] = saved
                let numeric = (plus - minus) / Double(2 * h)
                #expect(abs(numeric - Double(analytic[i])) < 2e-3 + 1e-2 * abs(numeric), "\(name)[\(i)]: \(analytic[i]) vs \(numeric)")
            }
        }
        // The dropped slot and the empty expert get exactly zero gradient.
        #expect(w.grad!.values[9] == 0)
        #expect(experts.gate.grad!.values[(2 * inter * d)...].allSatisfy { $0 == 0 })
    }

    @Test func perExpertNamesAreViewsOfTheStack() {
        let s = StackedExperts(experts: 2, hidden: 3, intermediate: 4)
        let named = s.namedParameters(prefix: "mlp.experts")
        #expect(named.map(\.0) == ["mlp.experts.0.gate_proj.weight", "mlp.experts.0.up_proj.weight", "mlp.experts.0.down_proj.weight",
                                   "mlp.experts.1.gate_proj.weight", "mlp.experts.1.up_proj.weight", "mlp.experts.1.down_proj.weight"])
        named[3].1.copy(from: Tensor(repeating: 7, shape: [4, 3]))
        #expect(s.gate.values[12...].allSatisfy { $0 == 7 } && s.gate.values[..<12].allSatisfy { $0 == 0 })
        // Gradient buffers come with the first fused backward (or ensureGradients), as views too.
        #expect(s.gate.grad == nil && named[3].1.grad == nil)
        s.ensureGradients()
        s.gate.grad!.fill(1)
        #expect(named[3].1.grad!.values.allSatisfy { $0 == 1 })
    }
}
