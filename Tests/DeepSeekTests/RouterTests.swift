import Testing
@testable import DeepSeek
@testable import FileFormats
@testable import Autograd

/// Every `TopKMethod` — what docs/design.md's "How to add a router" asks of a new one: on a
/// tiny batch each token gets K distinct experts sorted by id, inside the groups the method
/// allows, and the MoE layer's gradients (input and gate weight, through the routing weights)
/// match finite differences.
@Suite struct RouterTests {
    /// A tiny model whose MoE layers route with `method` (V3's config for `noaux_tc`, which needs
    /// sigmoid scores), with a non-zero router bias where the method has one.
    static func layer(_ method: TopKMethod) throws -> DeepSeekMoE {
        var c = method == .noauxTC ? DeepSeekConfig.tinyV3 : DeepSeekConfig.tiny
        c.topkMethod = method
        try c.validate()
        let moe = DeepSeekForCausalLM(c, seed: 7).model.layers[1].moe!
        // Scores well apart: a fresh gate's are nearly uniform, and its routing ties then lie
        // within the finite differences' probes, which cross them. With these seeds the probes
        // stay 5× away from any tie.
        Philox(seed: 9).fillNormal(moe.gate.weight, std: 0.3)
        if let bias = moe.gate.bias { Philox(seed: 8).fillNormal(bias, std: 0.1) }
        return moe
    }

    static let tokens = 6

    @Test(arguments: TopKMethod.allCases)
    func routesEveryTokenToKExpertsItsGroupsAllow(_ method: TopKMethod) throws {
        let moe = try Self.layer(method), c = moe.config
        let x = Tensor.randn([Self.tokens, c.hiddenSize], rng: Philox(seed: 1))
        let routing = Router.route(x, gate: moe.gate, config: c)
        let k = c.numExpertsPerTok, perGroup = c.nRoutedExperts / c.nGroup
        #expect(routing.weights.shape == [Self.tokens, k])
        for t in 0..<Self.tokens {
            let chosen = Array(routing.experts[(t * k)..<((t + 1) * k)])
            #expect(chosen == chosen.sorted() && Set(chosen).count == k && chosen.allSatisfy { (0..<c.nRoutedExperts).contains($0) })
            let groups = Set(chosen.map { $0 / perGroup })
            switch method {
            case .greedy: #expect(groups.count <= k)
            case .groupLimitedGreedy, .noauxTC: #expect(groups.count <= c.topkGroup, "token \(t): experts \(chosen)")
            }
        }
    }

    @Test(arguments: TopKMethod.allCases)
    func layerGradientsMatchFiniteDifferences(_ method: TopKMethod) throws {
        let moe = try Self.layer(method), c = moe.config
        let x = Tensor.randn([1, Self.tokens, c.hiddenSize], rng: Philox(seed: 2), requiresGrad: true)
        let probe = Tensor.randn([1, Self.tokens, c.hiddenSize], rng: Philox(seed: 3))
        func objective() -> Double {
            zip(moe(x, training: nil).0.values, probe.values).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
        (moe(x, training: nil).0 * probe).sum().backward()
        for (name, t) in [("x", x), ("gate", moe.gate.weight)] {
            let analytic = t.grad!.values
            for i in 0..<t.count {
                let saved = t.data[i], h: Float = 1e-3
                t.data[i] = saved + h
                let plus = withNoGrad { objective() }
                t.data[i] = saved - h
                let minus = withNoGrad { objective() }
                t.data[i] = saved
                let numeric = (plus - minus) / Double(2 * h)
                #expect(abs(numeric - Double(analytic[i])) < 2e-3 + 1e-2 * abs(numeric), "\(method) \(name)[\(i)]: \(analytic[i]) vs \(numeric)")
            }
        }
    }
}
