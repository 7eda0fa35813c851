import Foundation
import Testing
@testable import Optim
@testable import Autograd

@Suite struct OptimTests {
    /// AdamW as the paper writes it, in Float64, for comparison.
    func reference(w0: [Double], grads: [[Double]], lr: [Double], b1: Double, b2: Double, eps: Double, wd: Double) -> [Double] {
        var w = w0, m = [Double](repeating: 0, count: w0.count), v = m
        for (t, g) in grads.enumerated() {
            for i in w.indices {
                m[i] = b1 * m[i] + (1 - b1) * g[i]
                v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
                let mh = m[i] / (1 - pow(b1, Double(t + 1))), vh = v[i] / (1 - pow(b2, Double(t + 1)))
                w[i] = w[i] * (1 - lr[t] * wd) - lr[t] * mh / (vh.squareRoot() + eps)
            }
        }
        return w
    }

    @Test func adamWMatchesReference() {
        let w = Tensor([0.5, -1, 2, 0.1], shape: [2, 2], requiresGrad: true)
        let bias = Tensor([0.3, -0.2], shape: [2], requiresGrad: true)
        let opt = AdamW([("w", w), ("b", bias)], config: .init(beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1))
        let gs: [[Double]] = [[0.1, -0.2, 0.3, 0.05], [-0.3, 0.1, 0.2, 0.0], [0.2, 0.2, -0.1, 0.4]]
        let lrs = [1e-2, 5e-3, 2e-3]
        for (g, lr) in zip(gs, lrs) {
            w.grad = Tensor(g.map(Float.init), shape: [2, 2])
            bias.grad = Tensor([Float(g[0]), Float(g[1])], shape: [2])
            opt.update(lr: Float(lr))
        }
        let ref = reference(w0: [0.5, -1, 2, 0.1], grads: gs, lr: lrs, b1: 0.9, b2: 0.95, eps: 1e-8, wd: 0.1)
        for (a, b) in zip(w.values, ref) { #expect(abs(Double(a) - b) < 1e-6) }
        // Vectors (biases, norm scales) are not decayed.
        let refB = reference(w0: [0.3, -0.2], grads: gs.map { [$0[0], $0[1]] }, lr: lrs, b1: 0.9, b2: 0.95, eps: 1e-8, wd: 0)
        for (a, b) in zip(bias.values, refB) { #expect(abs(Double(a) - b) < 1e-6) }
        #expect(opt.step == 3)
    }

    /// The vectorised update gives the scalar formula's bits element by element (lanes and the
    /// tail alike), with and without a clipping scale: a run's split into lanes never shows.
    @Test func vectorisedKernelHasTheScalarBits() {
        let n = 16 * 40 + 7
        let rng = Philox(seed: 9, purpose: "adamw-kernel")
        func values(_ k: UInt64, _ s: Float) -> [Float] { (0..<n).map { (rng.uniform(k * 10_000 + UInt64($0)) - 0.5) * s } }
        let k = AdamWShard.Coefficients(stepSize: 3e-3, invC2: 1.7, decay: 0.9995)
        let (b1, b2, eps): (Float, Float, Float) = (0.9, 0.95, 1e-8)
        for scale: Float in [1, 0.37] {
            var w = values(1, 2), m = values(2, 0.1), v = values(3, 0.01).map(abs)
            let g = values(4, 1)
            var (rw, rm, rv) = (w, m, v)
            for j in 0..<n {
                let gj = scale == 1 ? g[j] : g[j] * scale
                rm[j] = b1 * rm[j] + (1 - b1) * gj
                rv[j] = b2 * rv[j] + (1 - b2) * gj * gj
                rw[j] = rw[j] * k.decay - k.stepSize * rm[j] / ((rv[j] * k.invC2).squareRoot() + eps)
            }
            w.withUnsafeMutableBufferPointer { wp in m.withUnsafeMutableBufferPointer { mp in v.withUnsafeMutableBufferPointer { vp in
                AdamW.kernel(k, count: n, weights: wp.baseAddress!, grad: g, m: mp.baseAddress!, v: vp.baseAddress!, scale: scale,
                             b1: b1, b2: b2, eps: eps)
            } } }
            #expect(w.map(\.bitPattern) == rw.map(\.bitPattern), "scale \(scale)")
            #expect(m.map(\.bitPattern) == rm.map(\.bitPattern) && v.map(\.bitPattern) == rv.map(\.bitPattern))
        }
    }

    @Test func clipping() {
        let a = Tensor([0, 0], shape: [2], requiresGrad: true), b = Tensor([0], shape: [1], requiresGrad: true)
        a.grad = Tensor([3, 0], shape: [2])
        b.grad = Tensor([4], shape: [1])
        #expect(clipGradNorm([a, b], maxNorm: 10) == 5)
        #expect(a.grad!.values == [3, 0])
        #expect(clipGradNorm([a, b], maxNorm: 1) == 5)
        #expect(abs(a.grad!.values[0] - 0.6) < 1e-6 && abs(b.grad!.values[0] - 0.8) < 1e-6)
    }

    @Test func schedules() {
        let c = LRSchedule.constant(peak: 1, warmup: 4)
        #expect(c.lr(at: 0) == 0.25 && c.lr(at: 3) == 1 && c.lr(at: 100) == 1)
        let cos = LRSchedule.cosine(peak: 1, warmup: 10, total: 110, minRatio: 0.1)
        #expect(cos.lr(at: 10) == 1)
        #expect(abs(cos.lr(at: 60) - 0.55) < 1e-12)
        #expect(abs(cos.lr(at: 110) - 0.1) < 1e-12 && abs(cos.lr(at: 500) - 0.1) < 1e-12)
        let ds = LRSchedule.deepseekStep(peak: 2, warmup: 10, total: 1000, factor: 0.316)
        #expect(ds.lr(at: 4) == 1 && ds.lr(at: 10) == 2 && ds.lr(at: 599) == 2)
        #expect(abs(ds.lr(at: 600) - 0.632) < 1e-12 && abs(ds.lr(at: 899) - 0.632) < 1e-12)
        #expect(abs(ds.lr(at: 900) - 2 * 0.316 * 0.316) < 1e-12)
    }
}
