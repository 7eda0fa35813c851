import Foundation
import Autograd

/// AdamW (Loshchilov & Hutter): Adam moments with bias correction and weight decay applied to
/// the weights directly (decoupled), one fused loop per tensor.
package final class AdamW {
    package struct Config: Codable, Sendable, Equatable {
        package var beta1: Float = 0.9
        package var beta2: Float = 0.95
        package var eps: Float = 1e-8
        package var weightDecay: Float = 0.1
        package init(beta1: Float = 0.9, beta2: Float = 0.95, eps: Float = 1e-8, weightDecay: Float = 0.1) {
            self.beta1 = beta1
            self.beta2 = beta2
            self.eps = eps
            self.weightDecay = weightDecay
        }
    }

    package let config: Config
    package let parameters: [(name: String, tensor: Tensor)]
    /// First and second moments, one buffer per parameter (same names, same shapes).
    package private(set) var m: [Tensor]
    package private(set) var v: [Tensor]
    /// Which parameters decay: matrices do; norm scales and biases do not (Megatron's default).
    let decays: [Bool]
    package private(set) var step = 0

    package init(_ parameters: [(String, Tensor)], config: Config = Config()) {
        self.config = config
        self.parameters = parameters.map { (name: $0.0, tensor: $0.1) }
        m = parameters.map { Tensor(zeros: $0.1.shape) }
        v = parameters.map { Tensor(zeros: $0.1.shape) }
        decays = parameters.map { $0.1.rank >= 2 }
    }

    /// One update at learning rate `lr`. Parameters without a gradient are left alone.
    package func update(lr: Float) {
        step += 1
        let b1 = config.beta1, b2 = config.beta2, eps = config.eps
        let c1 = 1 - Float(Foundation.pow(Double(b1), Double(step)))
        let c2 = 1 - Float(Foundation.pow(Double(b2), Double(step)))
        let updated = parameters.indices.filter { parameters[$0].tensor.grad != nil }
        let grads = updated.map { parameters[$0].tensor.grad!.contiguousView }
        // Whole tensors over the threads (a parallel loop per tensor woke a thread per matrix).
        parallelTasks(updated.map { parameters[$0].tensor.count }) { j in
            let i = updated[j], p = parameters[i].tensor
            let k = AdamWShard.Coefficients(stepSize: lr / c1, invC2: 1 / c2, decay: decays[i] ? 1 - lr * config.weightDecay : 1)
            AdamW.kernel(k, count: p.count, weights: p.data, grad: grads[j].data, m: m[i].data, v: v[i].data, scale: 1,
                         b1: b1, b2: b2, eps: eps)
        }
        withExtendedLifetime(grads) {}
    }

    /// The update of `count` elements, AdamW's arithmetic element by element (so any split of a
    /// tensor into shards updates to the same bits); `scale` multiplies the gradient (clipping).
    /// Runs on the calling thread: the callers spread whole tensors over the threads.
    @inline(__always)
    static func kernel(_ k: AdamWShard.Coefficients, count: Int, weights w: UnsafeMutablePointer<Float>, grad g: UnsafePointer<Float>,
                       m mp: UnsafeMutablePointer<Float>, v vp: UnsafeMutablePointer<Float>, scale: Float, b1: Float, b2: Float, eps: Float) {
        let decay = k.decay, stepSize = k.stepSize, invC2 = k.invC2
        // 16 lanes at a time with the same operations in the same order (IEEE square root and
        // division are correctly rounded in vector registers too, and Swift fuses no multiply-add):
        // the same bits as the scalar tail. A scalar square root and division per element make
        // the update compute-bound instead of memory-bound (figures: docs/benchmarks.md).
        typealias V = SIMD16<Float>
        let rw = UnsafeMutableRawPointer(w), rg = UnsafeRawPointer(g), rm = UnsafeMutableRawPointer(mp), rv = UnsafeMutableRawPointer(vp)
        var j = 0
        while j + 16 <= count {
            let o = j * 4
            var gj = rg.loadUnaligned(fromByteOffset: o, as: V.self)
            if scale != 1 { gj = gj * scale }
            let mj = b1 * rm.loadUnaligned(fromByteOffset: o, as: V.self) + (1 - b1) * gj
            let vj = b2 * rv.loadUnaligned(fromByteOffset: o, as: V.self) + (1 - b2) * gj * gj
            rm.storeBytes(of: mj, toByteOffset: o, as: V.self)
            rv.storeBytes(of: vj, toByteOffset: o, as: V.self)
            let wj = rw.loadUnaligned(fromByteOffset: o, as: V.self)
            rw.storeBytes(of: wj * decay - stepSize * mj / ((vj * invC2).squareRoot() + eps), toByteOffset: o, as: V.self)
            j += 16
        }
        while j < count {
            let gj = scale == 1 ? g[j] : g[j] * scale
            let mj = b1 * mp[j] + (1 - b1) * gj
            let vj = b2 * vp[j] + (1 - b2) * gj * gj
            mp[j] = mj
            vp[j] = vj
            w[j] = w[j] * decay - stepSize * mj / ((vj * invC2).squareRoot() + eps)
            j += 1
        }
    }

    /// Restores moments and step count (from a checkpoint).
    package func load(step: Int, m: [Tensor], v: [Tensor]) {
        precondition(m.count == parameters.count && v.count == parameters.count)
        for i in parameters.indices {
            self.m[i].copy(from: m[i])
            self.v[i].copy(from: v[i])
        }
        self.step = step
    }
}

extension Tensor {
    /// The tensor itself when contiguous, else a contiguous copy (no recording).
    var contiguousView: Tensor { isContiguous ? self : clone() }
}

/// The ZeRO-1 form of AdamW: the moments of one contiguous shard of a flat parameter vector,
/// updated with exactly AdamW's arithmetic, element by element, so a sharded update gives the
/// same bits as an unsharded one.
package final class AdamWShard {
    package let config: AdamW.Config
    package var m: [Float]
    package var v: [Float]
    package var step = 0

    package init(count: Int, config: AdamW.Config) {
        self.config = config
        m = [Float](repeating: 0, count: count)
        v = [Float](repeating: 0, count: count)
    }

    /// Starts an update at learning rate `lr`: the step count and the bias corrections.
    package func begin(lr: Float) -> Coefficients {
        step += 1
        let c1 = 1 - Float(Foundation.pow(Double(config.beta1), Double(step)))
        let c2 = 1 - Float(Foundation.pow(Double(config.beta2), Double(step)))
        return Coefficients(stepSize: lr / c1, invC2: 1 / c2, decay: 1 - lr * config.weightDecay)
    }

    /// One step's bias-corrected step size, 1/(1−β2^t), and the decay factor of decaying
    /// (matrix) weights (`apply` uses 1 for the others).
    package struct Coefficients { let stepSize: Float, invC2: Float, decay: Float }

    /// A run of shard elements for `apply(_:runs:scale:)`: offset..<offset+count, the parameters
    /// at `weights`, their gradient at `grad`, and whether they decay.
    package struct Run {
        package let offset: Int, count: Int
        package let weights: UnsafeMutablePointer<Float>, grad: UnsafePointer<Float>
        package let decays: Bool
        package init(offset: Int, count: Int, weights: UnsafeMutablePointer<Float>, grad: UnsafePointer<Float>, decays: Bool) {
            self.offset = offset
            self.count = count
            self.weights = weights
            self.grad = grad
            self.decays = decays
        }
    }

    /// Updates every run, the runs spread over the threads whole (one task each, largest first):
    /// a run as small as one expert matrix (65K elements) is not worth waking a thread for, which
    /// a parallel loop inside each run would do per matrix. Same arithmetic element by element,
    /// so the same bits.
    package func apply(_ k: Coefficients, runs: [Run], scale: Float) {
        m.withUnsafeMutableBufferPointer { mb in
            v.withUnsafeMutableBufferPointer { vb in
                let mp = mb.baseAddress!, vp = vb.baseAddress!, c = config
                parallelTasks(runs.map(\.count)) { i in
                    let r = runs[i]
                    AdamW.kernel(Coefficients(stepSize: k.stepSize, invC2: k.invC2, decay: r.decays ? k.decay : 1), count: r.count,
                                 weights: r.weights, grad: r.grad, m: mp + r.offset, v: vp + r.offset, scale: scale,
                                 b1: c.beta1, b2: c.beta2, eps: c.eps)
                }
            }
        }
    }
}
