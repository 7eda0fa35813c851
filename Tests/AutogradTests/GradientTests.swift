import Testing
@testable import Autograd

/// Every differentiable op against finite differences, including broadcast operands and
/// non-contiguous (transposed, sliced) inputs.
@Suite struct GradientTests {
    let r = GradCheck.randn

    @Test func matmul2D() {
        GradCheck.check("matmul", [r([3, 4], 1, 1, 0), r([4, 5], 2, 1, 0)]) { $0[0].matmul($0[1]) }
    }

    @Test func matmulBatchedAndSharedWeight() {
        GradCheck.check("bmm", [r([2, 3, 4], 3, 1, 0), r([2, 4, 2], 4, 1, 0)]) { $0[0].matmul($0[1]) }
        GradCheck.check("matmul shared", [r([2, 3, 4], 5, 1, 0), r([4, 2], 6, 1, 0)]) { $0[0].matmul($0[1]) }
    }

    @Test func matmulTransposedViews() {
        // Both operands reach BLAS as transpose flags, not copies.
        GradCheck.check("matmul Aᵀ·Bᵀ", [r([4, 3], 7, 1, 0), r([5, 4], 8, 1, 0)]) { $0[0].transposed().matmul($0[1].transposed()) }
        GradCheck.check("bmm permuted", [r([3, 2, 4], 9, 1, 0), r([2, 4, 3], 10, 1, 0)]) {
            $0[0].permute([1, 0, 2]).matmul($0[1])
        }
    }

    @Test func linear() {
        GradCheck.check("linear", [r([2, 3, 4], 11, 1, 0), r([5, 4], 12, 1, 0)]) { $0[0].linear($0[1]) }
        GradCheck.check("linear non-contiguous x", [r([4, 6], 13, 1, 0), r([5, 6], 14, 1, 0)]) {
            $0[0].transposed().transposed().slice(axis: 1, 1..<6).linear($0[1].slice(axis: 1, 1..<6))
        }
    }

    @Test func broadcastingArithmetic() {
        let a = r([2, 3, 4], 20, 1, 0), row = r([4], 21, 1, 0), col = r([3, 1], 22, 1, 0), b = r([2, 3, 4], 23, 1, 0)
        GradCheck.check("add", [a, row]) { $0[0] + $0[1] }
        GradCheck.check("sub", [a, col]) { $0[0] - $0[1] }
        GradCheck.check("mul", [a, col]) { $0[0] * $0[1] }
        GradCheck.check("mul same", [a, b]) { $0[0] * $0[1] }
        let pos = r([3, 1], 24, 0.2, 2)
        GradCheck.check("div", [a, pos]) { $0[0] / $0[1] }
        GradCheck.check("div broadcast lhs", [r([1, 4], 25, 1, 0), r([3, 4], 26, 0.2, 2)]) { $0[0] / $0[1] }
        GradCheck.check("scalars", [a]) { (2 - $0[0] * 3 + 1) / 4 }
        GradCheck.check("neg", [a]) { -$0[0] }
        GradCheck.check("add transposed", [r([4, 3], 27, 1, 0), r([3, 4], 28, 1, 0)]) { $0[0].transposed() + $0[1] }
    }

    @Test func reductions() {
        let a = r([3, 4, 5], 30, 1, 0)
        GradCheck.check("sum all", [a]) { $0[0].sum() }
        GradCheck.check("sum axes", [a]) { $0[0].sum(axes: [0, 2]) }
        GradCheck.check("sum keepDims", [a]) { $0[0].sum(axis: 1, keepDims: true) }
        GradCheck.check("mean", [a]) { $0[0].mean(axis: -1) }
        GradCheck.check("sum transposed", [a]) { $0[0].transposed(0, 2).sum(axis: 0) }
        // Distinct values spaced wider than the finite-difference step keep the argmax fixed.
        let spaced = Tensor((0..<24).map { Float(($0 * 7) % 24) * 0.1 }, shape: [4, 6], requiresGrad: true)
        GradCheck.check("max", [spaced], step: 1e-3) { $0[0].max(axis: 1) }
        GradCheck.check("max axis 0", [spaced], step: 1e-3) { $0[0].max(axis: 0, keepDims: true) }
    }

    @Test func shapeOps() {
        let a = r([2, 3, 4], 40, 1, 0)
        GradCheck.check("reshape", [a]) { $0[0].reshape([6, 4]) * $0[0].reshape([6, 4]) }
        GradCheck.check("permute", [a]) { $0[0].permute([2, 0, 1]).contiguous() }
        GradCheck.check("slice", [a]) { $0[0].slice(axis: 2, 1..<3) }
        GradCheck.check("split", [a]) { a in
            let p = a[0].split([1, 3], axis: 2)
            return p[0] * p[1].sum(axis: 2, keepDims: true)
        }
        GradCheck.check("concat", [a, r([2, 3, 2], 41, 1, 0)]) { Tensor.concat([$0[0], $0[1]], axis: 2) }
        GradCheck.check("concat views", [a]) { Tensor.concat([$0[0].transposed(0, 1), $0[0].transposed(0, 1)], axis: 0) }
        GradCheck.check("broadcast", [r([3, 1], 42, 1, 0)]) { $0[0].broadcast(to: [2, 3, 4]) }
    }

    @Test func indexing() {
        let table = r([5, 3], 50, 1, 0)
        GradCheck.check("indexSelect", [table]) { $0[0].indexSelect([4, 0, 4, 2]) }
        GradCheck.check("scatterAdd", [r([4, 3], 51, 1, 0)]) { $0[0].scatterAdd([1, 3, 1, 0], rows: 5) }
        GradCheck.check("gatherLast", [r([3, 6], 52, 1, 0)]) { $0[0].gatherLast([5, 0, 2, 2, 1, 4], k: 2) }
        GradCheck.check("indexSelect of view", [r([3, 5], 53, 1, 0)]) { $0[0].transposed().indexSelect([1, 1, 3]) }
    }

    @Test func unary() {
        let a = r([3, 5], 60, 1, 0), pos = r([3, 5], 61, 0.3, 2)
        GradCheck.check("exp", [a]) { $0[0].exp() }
        GradCheck.check("log", [pos]) { $0[0].log() }
        GradCheck.check("sqrt", [pos]) { $0[0].sqrt() }
        GradCheck.check("rsqrt", [pos]) { $0[0].rsqrt() }
        GradCheck.check("square", [a]) { $0[0].square() }
        GradCheck.check("sigmoid", [a]) { $0[0].sigmoid() }
        GradCheck.check("silu", [a]) { $0[0].silu() }
        GradCheck.check("silu transposed", [a]) { $0[0].transposed().silu() }
        GradCheck.check("swiglu", [a, r([3, 5], 62, 1, 0)]) { Tensor.swiglu(gate: $0[0], up: $0[1]) }
    }

    @Test func swigluLinear() {
        // x [B, T, D], gate and up [F, D]: silu(x·Gᵀ) ⊙ (x·Uᵀ) from one GEMM against [G; U].
        GradCheck.check("swigluLinear", [r([3, 4, 5], 63, 1, 0), r([6, 5], 64, 0.5, 0), r([6, 5], 65, 0.5, 0)]) {
            $0[0].swigluLinear(gate: $0[1], up: $0[2])
        }
        GradCheck.check("swigluLinear transposed input", [r([5, 4], 66, 1, 0), r([6, 5], 67, 0.5, 0), r([6, 5], 68, 0.5, 0)]) {
            $0[0].transposed().swigluLinear(gate: $0[1], up: $0[2])
        }
    }

    @Test func softmaxFamily() {
        let a = r([4, 7], 70, 2, 0)
        GradCheck.check("softmax", [a]) { $0[0].softmax() }
        GradCheck.check("logSoftmax", [a]) { $0[0].logSoftmax() }
        GradCheck.check("softmax transposed", [a]) { $0[0].transposed().softmax() }
        GradCheck.check("crossEntropy", [r([5, 6], 71, 2, 0)]) { $0[0].crossEntropy(targets: [1, ignoreIndex, 5, 0, 3]) }
        GradCheck.check("crossEntropy 3D view", [r([6, 2, 4], 72, 1, 0)]) {
            $0[0].permute([1, 0, 2]).crossEntropy(targets: [0, 1, 2, 3, 0, 1, 2, 3, ignoreIndex, 1, 2, 3])
        }
    }

    @Test func rmsNorm() {
        GradCheck.check("rmsNorm", [r([4, 8], 80, 1, 0), r([8], 81, 0.1, 1)]) { $0[0].rmsNorm(weight: $0[1], eps: 1e-6) }
        GradCheck.check("rmsNorm view", [r([8, 4], 82, 1, 0), r([8], 83, 0.1, 1)]) {
            $0[0].transposed().rmsNorm(weight: $0[1], eps: 1e-6)
        }
    }

    @Test func rotary() {
        let t = 5, d = 6
        let cos = Tensor((0..<(t * d / 2)).map { Float(Foundation_cos(Double($0) * 0.3)) }, shape: [t, d / 2])
        let sin = Tensor((0..<(t * d / 2)).map { Float(Foundation_sin(Double($0) * 0.3)) }, shape: [t, d / 2])
        GradCheck.check("rotary", [r([2, t, 3, d], 90, 1, 0)]) { $0[0].rotaryEmbedding(cos: cos, sin: sin) }
        GradCheck.check("rotary view", [r([2, 3, t, d], 91, 1, 0)]) { $0[0].transposed(1, 2).rotaryEmbedding(cos: cos, sin: sin) }
    }

    @Test func attention() {
        // q/k head dim 6 ≠ v head dim 4, as MLA's 192 vs 128.
        GradCheck.check("attention causal", [r([2, 4, 3, 6], 100, 1, 0), r([2, 4, 3, 6], 101, 1, 0), r([2, 4, 3, 4], 102, 1, 0)]) {
            Tensor.attention(q: $0[0], k: $0[1], v: $0[2], scale: 0.4, causal: true)
        }
        GradCheck.check("attention decode (T < S)", [r([1, 2, 2, 6], 103, 1, 0), r([1, 5, 2, 6], 104, 1, 0), r([1, 5, 2, 4], 105, 1, 0)]) {
            Tensor.attention(q: $0[0], k: $0[1], v: $0[2], scale: 0.4, causal: true)
        }
        GradCheck.check("attention full, permuted q", [r([1, 2, 3, 6], 106, 1, 0), r([1, 5, 2, 6], 107, 1, 0), r([1, 5, 2, 4], 108, 1, 0)]) {
            Tensor.attention(q: $0[0].transposed(1, 2), k: $0[1], v: $0[2], scale: 0.4, causal: false)
        }
        // Past one causal block (64 queries): the GEMMs over the lower blocks only.
        GradCheck.check("attention causal, blocks 64 + 6", [r([1, 70, 1, 3], 109, 1, 0), r([1, 70, 1, 3], 110, 1, 0), r([1, 70, 1, 2], 111, 1, 0)]) {
            Tensor.attention(q: $0[0], k: $0[1], v: $0[2], scale: 0.4, causal: true)
        }
        GradCheck.check("attention blocks, T < S", [r([1, 66, 1, 3], 112, 1, 0), r([1, 80, 1, 3], 113, 1, 0), r([1, 80, 1, 2], 114, 1, 0)]) {
            Tensor.attention(q: $0[0], k: $0[1], v: $0[2], scale: 0.4, causal: true)
        }
    }

    @Test func rotaryKeepingLeadingDimensions() {
        // MLA's queries: [q_nope | q_pe] with the rope on the last 4 of each head's 7 dimensions.
        let t = 5, rope = 4
        let cos = Tensor((0..<(t * rope / 2)).map { Float(Foundation_cos(Double($0) * 0.3)) }, shape: [t, rope / 2])
        let sin = Tensor((0..<(t * rope / 2)).map { Float(Foundation_sin(Double($0) * 0.3)) }, shape: [t, rope / 2])
        GradCheck.check("rotary keep 3", [r([2, t, 3, 3 + rope], 92, 1, 0)]) { $0[0].rotaryEmbedding(cos: cos, sin: sin, keep: 3) }
        GradCheck.check("rotary keep 3 interleaved", [r([2, t, 3, 3 + rope], 93, 1, 0)]) {
            $0[0].rotaryEmbedding(cos: cos, sin: sin, interleaved: true, keep: 3)
        }
    }

    @Test func latentAttention() {
        // q [B, T, H, nope + rope], kv [B, S, H, nope + v], one shared rope key head [B, S, 1, rope].
        GradCheck.check("latentAttention causal", [r([2, 4, 3, 7], 120, 1, 0), r([2, 4, 3, 8], 121, 1, 0), r([2, 4, 1, 2], 122, 1, 0)]) {
            Tensor.latentAttention(q: $0[0], kv: $0[1], kPe: $0[2], nope: 5, scale: 0.4, causal: true)
        }
        GradCheck.check("latentAttention decode (T < S)", [r([1, 2, 2, 7], 123, 1, 0), r([1, 5, 2, 8], 124, 1, 0), r([1, 5, 1, 2], 125, 1, 0)]) {
            Tensor.latentAttention(q: $0[0], kv: $0[1], kPe: $0[2], nope: 5, scale: 0.4, causal: true)
        }
        GradCheck.check("latentAttention packed", [r([1, 6, 2, 7], 126, 1, 0), r([1, 6, 2, 8], 127, 1, 0), r([1, 6, 1, 2], 128, 1, 0)]) {
            Tensor.latentAttention(q: $0[0], kv: $0[1], kPe: $0[2], nope: 5, scale: 0.4, causal: true, segments: [0, 0, 0, 1, 1, 2])
        }
        GradCheck.check("latentAttention causal, blocks 64 + 6", [r([1, 70, 2, 5], 129, 1, 0), r([1, 70, 2, 6], 133, 1, 0), r([1, 70, 1, 2], 134, 1, 0)]) {
            Tensor.latentAttention(q: $0[0], kv: $0[1], kPe: $0[2], nope: 3, scale: 0.4, causal: true)
        }
    }

    /// The fused kernel against `attention` (golden-tested against PyTorch) on the keys and values
    /// the model used to assemble with split, broadcast and concat: the same GEMM shapes, so the
    /// same bits, forward and backward — which is what keeps runs and checkpoints comparable
    /// across the change.
    @Test func latentAttentionEqualsAttentionOnAssembledHeads() {
        let b = 2, t = 80, h = 4, nope = 8, rope = 4, dv = 6  // past one causal block
        let q = r([b, t, h, nope + rope], 130, 1, 0), kv = r([b, t, h, nope + dv], 131, 1, 0), pe = r([b, t, 1, rope], 132, 1, 0)
        let segments = (0..<(b * t)).map { $0 / 5 }
        for seg in [nil, segments] {
            let fused = Tensor.latentAttention(q: q, kv: kv, kPe: pe, nope: nope, scale: 0.3, causal: true, segments: seg)
            let probe = GradCheck.probe(for: fused)
            (fused * probe).sum().backward()
            let fusedGrads = [q, kv, pe].map { $0.grad!.values }
            for x in [q, kv, pe] { x.grad = nil }
            let parts = kv.split([nope, dv], axis: -1)
            let k = Tensor.concat([parts[0], pe.broadcast(to: [b, t, h, rope])], axis: -1)
            let plain = Tensor.attention(q: q, k: k, v: parts[1], scale: 0.3, causal: true, segments: seg)
            (plain * probe).sum().backward()
            #expect(fused.values == plain.values)
            #expect(fusedGrads == [q, kv, pe].map { $0.grad!.values })
            for x in [q, kv, pe] { x.grad = nil }
        }
    }

    @Test func contiguousAndReuse() {
        // A tensor used twice accumulates both gradient paths.
        GradCheck.check("reuse", [r([3, 3], 110, 1, 0)]) { $0[0].matmul($0[0]) + $0[0] * $0[0] }
    }
}
