import Testing
import CBLAS
import BF16GEMM
@testable import Autograd

/// The bfloat16 products (`precision: bf16`): the AVX512-BF16 kernel and the fallback both give
/// the products of the operands' bfloat16 values summed in float32, the kernel's bits do not
/// depend on where a product is cut, and the path is really taken.
@Suite(.serialized) struct BF16GEMMTests {
    struct Case: Sendable, CustomStringConvertible {
        let m, n, k: Int; let ta, tb: Bool
        var description: String { "\(m)x\(n)x\(k):\(ta ? "T" : "N"):\(tb ? "T" : "N")" }
    }
    /// Edges of every blocking: tiles of 12 × 32, K pairs (odd K), K blocks of 256, M blocks of 192.
    static let cases: [Case] = [false, true].flatMap { ta in [false, true].flatMap { tb in
        [Case(m: 37, n: 45, k: 19, ta: ta, tb: tb), Case(m: 13, n: 70, k: 1, ta: ta, tb: tb),
         Case(m: 300, n: 200, k: 513, ta: ta, tb: tb), Case(m: 1, n: 33, k: 64, ta: ta, tb: tb)]
    } }

    struct Operands { let a: [Float]; let lda: Int; let b: [Float]; let ldb: Int; let c: [Float]; let ldc: Int }

    func operands(_ c: Case) -> Operands {
        let lda = (c.ta ? c.m : c.k) + 3, ldb = (c.tb ? c.k : c.n) + 5, ldc = c.n + 2
        let a = Tensor.randn([(c.ta ? c.k : c.m) * lda], rng: Philox(seed: 21, purpose: "bf16-gemm")).values
        let b = Tensor.randn([(c.tb ? c.n : c.k) * ldb], rng: Philox(seed: 22, purpose: "bf16-gemm")).values
        let start = Tensor.randn([c.m * ldc], rng: Philox(seed: 23, purpose: "bf16-gemm")).values
        return Operands(a: a, lda: lda, b: b, ldb: ldb, c: start, ldc: ldc)
    }

    /// Worst |got − want| / (1 + Σ|terms|) against Σ bf16(a)·bf16(b) in float64, alpha 0.75,
    /// beta 1.5 (float32 sums of K terms are off by about √K·2⁻²⁴ of their terms' magnitude);
    /// and whether the padding between C's rows was left alone.
    func check(_ c: Case, _ run: (Operands, inout [Float]) -> Void) -> (worst: Double, paddingKept: Bool) {
        let o = operands(c)
        var out = o.c
        run(o, &out)
        var worst = 0.0, kept = true
        for i in 0..<c.m {
            for j in 0..<c.n {
                var s = 0.0, magnitude = 0.0
                for p in 0..<c.k {
                    let x = c.ta ? o.a[p * o.lda + i] : o.a[i * o.lda + p], y = c.tb ? o.b[j * o.ldb + p] : o.b[p * o.ldb + j]
                    let term = Double(BFloat16.rounded(x)) * Double(BFloat16.rounded(y))
                    s += term
                    magnitude += abs(term)
                }
                let want = 0.75 * s + 1.5 * Double(o.c[i * o.ldc + j])
                magnitude = 0.75 * magnitude + 1.5 * abs(Double(o.c[i * o.ldc + j]))
                worst = max(worst, abs(Double(out[i * o.ldc + j]) - want) / (1 + magnitude))
            }
            for j in c.n..<o.ldc where out[i * o.ldc + j] != o.c[i * o.ldc + j] { kept = false }
        }
        return (worst, kept)
    }

    /// The kernel itself, wherever the CPU runs it (also under `DEEPTRAIN_BF16=emulate`); on a CPU
    /// without AVX512-BF16 the fallback's test below covers bf16.
    @Test(.enabled(if: dt_bf16_supported(), "this CPU has no AVX512-BF16"), arguments: cases)
    func theKernelSumsTheRoundedProducts(_ c: Case) {
        let r = check(c) { o, out in
            dt_bf16_gemm(c.ta, c.tb, Int32(c.m), Int32(c.n), Int32(c.k), 0.75, o.a, Int32(o.lda), o.b, Int32(o.ldb), 1.5, &out, Int32(o.ldc))
        }
        #expect(r.worst < 1e-6, "\(c): worst relative error \(r.worst)")
        #expect(r.paddingKept, "\(c) wrote between C's rows")
    }

    @Test(arguments: cases) func theFallbackSumsTheRoundedProducts(_ c: Case) {
        let r = check(c) { o, out in
            emulatedBF16(c.ta, c.tb, c.m, c.n, c.k, 0.75, o.a, o.lda, o.b, o.ldb, 1.5, &out, o.ldc)
        }
        #expect(r.worst < 1e-6, "\(c): worst relative error \(r.worst)")
        #expect(r.paddingKept, "\(c) wrote between C's rows")
    }

    /// An output's bits are a function of its row of op(A), its column of op(B) and K: the same
    /// whole, in row blocks, in column blocks, and cut on one thread or two.
    @Test(.enabled(if: MatmulPrecision.nativeBF16, "bf16 runs emulated here: sgemm's cuts are the fp32 tests'"))
    func theKernelsBitsDoNotDependOnWhereAProductIsCut() {
        let (m, n, k) = (700, 300, 600)
        let a = Tensor.randn([m * k], rng: Philox(seed: 31, purpose: "bf16-cut")).values
        let b = Tensor.randn([n * k], rng: Philox(seed: 32, purpose: "bf16-cut")).values
        var whole = [Float](repeating: 0, count: m * n)
        onePiece(false, true, m, n, k, 1, a, k, b, k, 0, &whole, n, .bf16)
        var rows = [Float](repeating: 0, count: m * n), cols = rows
        a.withUnsafeBufferPointer { ap in
            rows.withUnsafeMutableBufferPointer { cp in
                for r0 in stride(from: 0, to: m, by: 100) {
                    onePiece(false, true, min(100, m - r0), n, k, 1, ap.baseAddress! + r0 * k, k, b, k, 0, cp.baseAddress! + r0 * n, n, .bf16)
                }
            }
        }
        b.withUnsafeBufferPointer { bp in
            cols.withUnsafeMutableBufferPointer { cp in
                for c0 in stride(from: 0, to: n, by: 50) {
                    onePiece(false, true, m, min(50, n - c0), k, 1, a, k, bp.baseAddress! + c0 * k, k, 0, cp.baseAddress! + c0, n, .bf16)
                }
            }
        }
        #expect(rows == whole)
        #expect(cols == whole)
        let saved = Threads.count
        defer { Threads.set(saved) }
        for t in [1, 2] {
            Threads.set(t)
            var out = [Float](repeating: 0, count: m * n)
            cutGEMM(transA: false, transB: true, m: m, n: n, k: k, a, lda: k, b, ldb: k, &out, ldc: n, precision: .bf16)
            #expect(out == whole, "cut at \(t) threads")
        }
    }

    /// Below 32 rows or columns a bf16 product is float32's (decoding's): sgemm's bits.
    @Test func fewRowsStayFloat32() {
        let (m, n, k) = (8, 256, 256)
        let a = Tensor.randn([m * k], rng: Philox(seed: 51, purpose: "bf16-few")).values
        let b = Tensor.randn([n * k], rng: Philox(seed: 52, purpose: "bf16-few")).values
        var fp32 = [Float](repeating: 0, count: m * n), bf16 = fp32
        onePiece(false, true, m, n, k, 1, a, k, b, k, 0, &fp32, n, .fp32)
        onePiece(false, true, m, n, k, 1, a, k, b, k, 0, &bf16, n, .bf16)
        #expect(bf16 == fp32)
    }

    /// `precision: bf16` reaches the products: `linear` then differs from float32 by bfloat16's
    /// rounding (about 2⁻⁹ of each operand), not more, and the router's stays float32.
    @Test func linearFollowsThePrecision() {
        let x = Tensor.randn([64, 256], rng: Philox(seed: 41, purpose: "bf16-linear"))
        let w = Tensor.randn([128, 256], std: 0.05, rng: Philox(seed: 42, purpose: "bf16-linear"))
        let fp32 = withNoGrad { x.linear(w) }.values
        let bf16 = MatmulPrecision.with(.bf16) { withNoGrad { x.linear(w) } }.values
        let pinned = MatmulPrecision.with(.bf16) { withNoGrad { x.linear(w, precision: .fp32) } }.values
        let scale = fp32.map { abs(Double($0)) }.reduce(0, +) / Double(fp32.count)
        let diff = zip(fp32, bf16).map { abs(Double($0) - Double($1)) }.max()!
        #expect(diff > 0, "bf16 gave float32's bits: the path was not taken")
        #expect(diff < 0.05 * scale, "bf16 differs from float32 by \(diff) at a mean magnitude \(scale)")
        #expect(pinned == fp32)
    }
}
