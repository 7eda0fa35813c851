import Foundation
import Autograd

/// `deeptrain bench attention`: the fused attention kernel alone at the dense benchmark's
/// shapes, forward and backward, against the FLOPs docs/design.md §7 credits it with.
public enum OpBenchmark {
    public struct Report: Codable, Sendable {
        public var benchmark = "attention"
        public var blas_kernel = KernelSelection.current.kernel
        public let batch: Int, length: Int, heads: Int, head_dim_qk: Int, head_dim_v: Int
        public let causal: Bool
        public let forward_ms: Double
        public let backward_ms: Double
        public let credited_gflops: Double
    }

    public static func attention(batch b: Int = 8, length t: Int = 256, heads h: Int = 8, dk: Int = 32, dv: Int = 32,
                                 causal: Bool = true, repeats: Int = 10, threads: Int = 2) -> Report {
        Threads.set(threads)
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
        return Report(batch: b, length: t, heads: h, head_dim_qk: dk, head_dim_v: dv, causal: causal,
                      forward_ms: fwd * 1e3, backward_ms: bwd * 1e3, credited_gflops: flops / (fwd + bwd) / 1e9)
    }
}
