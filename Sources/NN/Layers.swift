import Autograd

/// y = x·Wᵀ (+ b); weight stored [out, in] as in PyTorch and Hugging Face checkpoints.
package final class Linear: Module, @unchecked Sendable {
    package let weight: Tensor
    package let bias: Tensor?

    package init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = false) {
        weight = parameter([outFeatures, inFeatures])
        self.bias = bias ? parameter([outFeatures]) : nil
    }

    package func callAsFunction(_ x: Tensor) -> Tensor {
        let y = x.linear(weight)
        if let bias { return y + bias }
        return y
    }
}

/// Token ids → vectors.
package final class Embedding: Module, @unchecked Sendable {
    package let weight: Tensor

    package init(_ count: Int, _ dim: Int) {
        weight = parameter([count, dim])
    }

    /// `ids` in row-major order of `shape`; returns shape + [dim].
    package func callAsFunction(_ ids: [Int], shape: [Int]) -> Tensor {
        weight.indexSelect(ids).reshape(shape + [weight.shape[1]])
    }
}

/// Root-mean-square layer norm with a learned scale (initialised to ones).
package final class RMSNorm: Module, @unchecked Sendable {
    package let weight: Tensor
    package let eps: Float

    package init(_ dim: Int, eps: Float = 1e-6) {
        weight = parameter([dim], fill: 1)
        self.eps = eps
    }

    package func callAsFunction(_ x: Tensor) -> Tensor { x.rmsNorm(weight: weight, eps: eps) }
}

/// The gated feed-forward of Llama and DeepSeek: down(silu(gate(x)) · up(x)).
package final class SwiGLU: Module, @unchecked Sendable {
    package let gate_proj: Linear
    package let up_proj: Linear
    package let down_proj: Linear

    package init(dim: Int, hidden: Int) {
        gate_proj = Linear(dim, hidden)
        up_proj = Linear(dim, hidden)
        down_proj = Linear(hidden, dim)
    }

    /// The gate and up projections run as one GEMM with the activation (`swigluLinear`).
    package func callAsFunction(_ x: Tensor) -> Tensor {
        down_proj(x.swigluLinear(gate: gate_proj.weight, up: up_proj.weight))
    }
}
