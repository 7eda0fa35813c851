import Testing
@testable import Autograd

/// Finite-difference gradient checking for float32 ops.
///
/// The scalar checked is L = Σ out ⊙ probe (probe fixed random), accumulated in Float64, so every
/// output element's gradient path is exercised. Numerical gradients use central differences with
/// a step relative to each input's magnitude; analytic ones come from `backward()`.
struct GradCheck {
    static func probe(for out: Tensor, seed: UInt64 = 99) -> Tensor {
        Tensor.randn(out.shape, rng: Philox(seed: seed, purpose: "probe"))
    }

    static func objective(_ out: Tensor, _ probe: Tensor) -> Double {
        let o = out.values, p = probe.values
        var s = 0.0
        for i in o.indices { s += Double(o[i]) * Double(p[i]) }
        return s
    }

    /// Checks d(Σ f(inputs)⊙probe)/d(inputs[i]) for every input that requires grad.
    static func check(_ name: String, _ inputs: [Tensor], step: Float = 1e-2, atol: Double = 2e-3, rtol: Double = 1e-2,
                      sourceLocation: SourceLocation = #_sourceLocation, _ f: ([Tensor]) -> Tensor) {
        for t in inputs { t.grad = nil }
        let out = f(inputs)
        let probe = probe(for: out)
        let loss = (out * probe).sum()
        loss.backward()
        for (k, x) in inputs.enumerated() where x.requiresGrad {
            guard let analytic = x.grad?.values else {
                Issue.record("\(name): input \(k) got no gradient", sourceLocation: sourceLocation)
                continue
            }
            var numeric = [Double](repeating: 0, count: x.count)
            withNoGrad {
                for i in 0..<x.count {
                    let saved = x.data[i]
                    let h = step * Swift.max(1, abs(saved))
                    x.data[i] = saved + h
                    let plus = objective(f(inputs), probe)
                    x.data[i] = saved - h
                    let minus = objective(f(inputs), probe)
                    x.data[i] = saved
                    numeric[i] = (plus - minus) / (2 * Double(h))
                }
            }
            let scale = numeric.map(abs).max() ?? 0
            var worst = 0.0, worstAt = 0
            for i in numeric.indices {
                let err = abs(Double(analytic[i]) - numeric[i]) - (atol + rtol * scale)
                if err > worst { worst = err; worstAt = i }
            }
            #expect(worst <= 0, "\(name): input \(k) shape \(x.shape) element \(worstAt): analytic \(analytic[worstAt]) vs numeric \(numeric[worstAt])",
                    sourceLocation: sourceLocation)
        }
    }

    static func randn(_ shape: [Int], seed: UInt64, std: Float = 1, shift: Float = 0) -> Tensor {
        let t = Tensor.randn(shape, std: std, rng: Philox(seed: seed, purpose: "gradcheck"))
        if shift != 0 { for i in 0..<t.count { t.data[i] += shift } }
        t.requiresGrad = true
        return t
    }
}

import Foundation
func Foundation_cos(_ x: Double) -> Double { Foundation.cos(x) }
func Foundation_sin(_ x: Double) -> Double { Foundation.sin(x) }
