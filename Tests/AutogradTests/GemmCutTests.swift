import Testing
import CBLAS
@testable import Autograd

/// `GemmCut`: the cut is a function of the shape alone, its pieces compute the product, and the
/// product's bits are those of its pieces run one by one, whatever the thread count.
@Suite(.serialized) struct GemmCutTests {
    @Test func theCutFollowsTheShapeOnly() {
        #expect(GemmCut.of(m: 2048, n: 256, k: 256) == .rows(512))
        #expect(GemmCut.of(m: 4096, n: 256, k: 2048) == .rows(512))
        #expect(GemmCut.of(m: 256, n: 256, k: 2048) == .rows(128))
        #expect(GemmCut.of(m: 600, n: 256, k: 256) == .rows(320))
        #expect(GemmCut.of(m: 64, n: 256, k: 2048) == .columns(128))
        #expect(GemmCut.of(m: 16, n: 4096, k: 256) == .columns(512))
        #expect(GemmCut.of(m: 16, n: 256, k: 256) == .whole)       // below the work worth a thread
        #expect(GemmCut.of(m: 64, n: 48, k: 4096) == .whole)       // few rows and few columns
        #expect(GemmCut.of(m: 0, n: 256, k: 256) == .whole)
        #expect(GemmCut.rows(512).pieces(m: 2048, n: 1) == 4)
        #expect(GemmCut.rows(320).pieces(m: 600, n: 1) == 2)
        #expect(GemmCut.columns(512).pieces(m: 1, n: 4100) == 9)
        let saved = Threads.count
        defer { Threads.set(saved) }
        for t in [1, 2, 4] {
            Threads.set(t)
            #expect(GemmCut.of(m: 2048, n: 256, k: 256) == .rows(512))
        }
    }

    /// op(A) is m × k and op(B) k × n, stored with padded leading dimensions.
    struct Case { let m, n, k: Int; let ta, tb: Bool }
    static let cases: [Case] = [Bool](arrayLiteral: false, true).flatMap { ta in [false, true].flatMap { tb in
        [Case(m: 300, n: 200, k: 130, ta: ta, tb: tb),      // rows of 192
         Case(m: 40, n: 700, k: 160, ta: ta, tb: tb),       // columns of 384
         Case(m: 1100, n: 40, k: 100, ta: ta, tb: tb)]      // rows of 512, a short last block
    } }

    func operands(_ c: Case) -> (a: [Float], lda: Int, b: [Float], ldb: Int) {
        let aRows = c.ta ? c.k : c.m, aCols = c.ta ? c.m : c.k
        let bRows = c.tb ? c.n : c.k, bCols = c.tb ? c.k : c.n
        let lda = aCols + 3, ldb = bCols + 5
        let rng = Philox(seed: 11, purpose: "gemm-cut")
        let a = Tensor.rand([aRows * lda], rng: rng).values, b = Tensor.rand([bRows * ldb], rng: Philox(seed: 12, purpose: "gemm-cut")).values
        return (a, lda, b, ldb)
    }

    @Test(arguments: cases) func piecesComputeTheProduct(_ c: Case) {
        let (a, lda, b, ldb) = operands(c)
        let ldc = c.n + 2
        let start = (0..<(c.m * ldc)).map { Float($0 % 7) * 0.25 }
        var out = start
        let alpha: Float = 0.5, beta: Float = 2
        cutGEMM(transA: c.ta, transB: c.tb, m: c.m, n: c.n, k: c.k, alpha: alpha, a, lda: lda, b, ldb: ldb, beta: beta, &out, ldc: ldc)
        var worst = 0.0
        for i in 0..<c.m {
            for j in 0..<c.n {
                var s = 0.0
                for p in 0..<c.k {
                    let x = c.ta ? a[p * lda + i] : a[i * lda + p]
                    let y = c.tb ? b[j * ldb + p] : b[p * ldb + j]
                    s += Double(x) * Double(y)
                }
                let want = Double(alpha) * s + Double(beta) * Double(start[i * ldc + j])
                worst = max(worst, abs(Double(out[i * ldc + j]) - want) / max(1, abs(want)))
            }
            // Padding between rows of C is never written.
            for j in c.n..<ldc { #expect(out[i * ldc + j] == start[i * ldc + j]) }
        }
        #expect(worst < 1e-5, "\(c): worst relative error \(worst)")
    }

    /// The bits of a cut product on one or two threads are those of its pieces, each one
    /// single-threaded `cblas_sgemm`, run in order: nothing about the threads enters.
    @Test(arguments: cases) func theBitsAreThoseOfThePiecesOnAnyThreadCount(_ c: Case) {
        let (a, lda, b, ldb) = operands(c)
        let plan = GemmCut.of(m: c.m, n: c.n, k: c.k)
        #expect(plan != .whole)
        var pieces = [Float](repeating: 0, count: c.m * c.n)
        let ta = c.ta ? CblasTrans : CblasNoTrans, tb = c.tb ? CblasTrans : CblasNoTrans
        Threads.blasOnOneThread()
        for i in 0..<plan.pieces(m: c.m, n: c.n) {
            pieces.withUnsafeMutableBufferPointer { p in
                switch plan {
                case .rows(let r):
                    let r0 = i * r, rows = min(r, c.m - r0)
                    a.withUnsafeBufferPointer { ap in
                        cblas_sgemm(CblasRowMajor, ta, tb, Int32(rows), Int32(c.n), Int32(c.k), 1, ap.baseAddress! + (c.ta ? r0 : r0 * lda),
                                    Int32(lda), b, Int32(ldb), 0, p.baseAddress! + r0 * c.n, Int32(c.n))
                    }
                case .columns(let w):
                    let c0 = i * w, cols = min(w, c.n - c0)
                    b.withUnsafeBufferPointer { bp in
                        cblas_sgemm(CblasRowMajor, ta, tb, Int32(c.m), Int32(cols), Int32(c.k), 1, a, Int32(lda),
                                    bp.baseAddress! + (c.tb ? c0 * ldb : c0), Int32(ldb), 0, p.baseAddress! + c0, Int32(c.n))
                    }
                case .whole: break
                }
            }
        }
        let saved = Threads.count
        defer { Threads.set(saved) }
        for t in [1, 2] {
            Threads.set(t)
            var out = [Float](repeating: 0, count: c.m * c.n)
            cutGEMM(transA: c.ta, transB: c.tb, m: c.m, n: c.n, k: c.k, a, lda: lda, b, ldb: ldb, &out, ldc: c.n)
            #expect(out == pieces, "\(c) at \(t) threads")
        }
    }
}
