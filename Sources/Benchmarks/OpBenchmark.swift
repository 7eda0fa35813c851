import Foundation
import Autograd

/// `deeptrain bench attention`: the fused attention kernel alone at the dense benchmark's
/// shapes, forward and backward, against the FLOPs docs/design.md §7 credits it with.
package enum OpBenchmark {
    package struct Report: Codable, Sendable {
        package var benchmark = "attention"
        package var blasKernel = KernelSelection.current.kernel
        package let batch: Int, length: Int, heads: Int, headDimQK: Int, headDimV: Int
        package let causal: Bool
        package let precision: String
        package var bf16Path: String? = MatmulPrecision.current == .bf16 ? MatmulPrecision.bf16Path : nil
        package let forwardMs: Double
        package let backwardMs: Double
        package let creditedGFLOPS: Double

        enum CodingKeys: String, CodingKey {
            case benchmark
            case blasKernel = "blas_kernel"
            case batch
            case length
            case heads
            case headDimQK = "head_dim_qk"
            case headDimV = "head_dim_v"
            case causal
            case precision
            case bf16Path = "bf16_path"
            case forwardMs = "forward_ms"
            case backwardMs = "backward_ms"
            case creditedGFLOPS = "credited_gflops"
        }
    }

    package static func attention(batch b: Int = 8, length t: Int = 256, heads h: Int = 8, dk: Int = 32, dv: Int = 32,
                                 causal: Bool = true, repeats: Int = 10, threads: Int = 2,
                                 precision: MatmulPrecision = .fp32) -> Report {
        Threads.set(threads)
        MatmulPrecision.set(precision)
        let rng = Philox(seed: 5, purpose: "bench-attention")
        let q = Tensor.randn([b, t, h, dk], rng: rng, requiresGrad: true)
        let k = Tensor.randn([b, t, h, dk], rng: Philox(seed: 6), requiresGrad: true)
        let v = Tensor.randn([b, t, h, dv], rng: Philox(seed: 7), requiresGrad: true)
        let g = Tensor.randn([b, t, h, dv], rng: Philox(seed: 8))
        var fwd = Double.infinity, bwd = Double.infinity
        for _ in 0..<repeats {
            let t0 = now()
            let o = Tensor.attention(q: q, k: k, v: v, scale: 0.17, causal: causal)
            let t1 = now()
            o.backward(seed: g)
            let t2 = now()
            fwd = min(fwd, t1 - t0)
            bwd = min(bwd, t2 - t1)
        }
        // 6·H·T·(d_qk + d_v) per token, as the MFU formula counts it (forward 1/3, backward 2/3).
        let flops = 6 * Double(b * t) * Double(h * t * (dk + dv))
        return Report(batch: b, length: t, heads: h, headDimQK: dk, headDimV: dv, causal: causal,
                      precision: precision.rawValue, forwardMs: fwd * 1e3, backwardMs: bwd * 1e3, creditedGFLOPS: flops / (fwd + bwd) / 1e9)
    }
}
