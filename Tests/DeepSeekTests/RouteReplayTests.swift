import Testing
@testable import DeepSeek
@testable import Autograd
@testable import FileFormats

/// Router replay: recorded experts replace the router's own choice only where recorded and
/// only with replay on; the comparison counts either way; the gate weights come from the
/// forward's own scores at the experts used.
@Suite struct RouteReplayTests {
    @Test func recordedExpertsReplaceOwnOnlyWhereRecordedAndOn() {
        let own = [0, 1, 2, 3, 4, 5]  // three tokens, K = 2
        let recorded = [0, 1, 2, 4, -1, -1]
        let off = RouteReplay(experts: [3: recorded], k: 2, replay: false)
        #expect(off.choose(layer: 3, own: own) == own)
        #expect(off.compared == 2 && off.differing == 1)
        let on = RouteReplay(experts: [3: recorded], k: 2, replay: true)
        #expect(on.choose(layer: 3, own: own) == [0, 1, 2, 4, 4, 5])
        #expect(on.compared == 2 && on.differing == 1)
        #expect(on.choose(layer: 1, own: own) == own)  // a layer without a record
    }

    @Test func replayedWeightsAreTheForwardsOwnScoresAtTheUsedExperts() {
        var c = DeepSeekConfig.tiny
        c.numExpertsPerTok = 2
        let gate = RouterGate(experts: c.nRoutedExperts, hidden: c.hiddenSize)
        let x = Tensor.randn([3, c.hiddenSize], rng: Philox(seed: 5, purpose: "route-replay-test"))
        let plain = withNoGrad { Router.route(x, gate: gate, config: c) }
        // Every token routed to experts 0 and 1 instead.
        let forced = withNoGrad { Router.route(x, gate: gate, config: c, choose: { own in own.indices.map { $0 % 2 } }) }
        #expect(forced.experts == [0, 1, 0, 1, 0, 1])
        let scores = plain.scores.values, e = c.nRoutedExperts, w = forced.weights.values
        for t in 0..<3 {
            let s0 = scores[t * e], s1 = scores[t * e + 1]
            let want: [Float] = c.normTopkProb ? [s0 / (s0 + s1 + 1e-20), s1 / (s0 + s1 + 1e-20)]
                : [s0 * Float(c.routedScalingFactor), s1 * Float(c.routedScalingFactor)]
            #expect(abs(w[2 * t] - want[0]) < 1e-6 && abs(w[2 * t + 1] - want[1]) < 1e-6, "token \(t)")
        }
    }
}
