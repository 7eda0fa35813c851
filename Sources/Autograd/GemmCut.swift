import CBLAS
import BF16GEMM

/// How one GEMM is cut into pieces that run side by side on the process's threads, each a
/// single-threaded `cblas_sgemm`. The cut is a function of the shape alone — never of the
/// thread count or the layout — so a product's bits are the same on one thread or two, and
/// under every OpenBLAS kernel (Haswell's changes bits with the way OpenBLAS threads split a
/// call; docs/design.md §6.7). OpenBLAS itself always runs on one thread (`Threads`).
///
/// A piece is a block of C's rows (or, for few rows, of its columns) with all of K, so every
/// output element is summed in the same order as in the uncut call's piece. Blocks of 512 rows
/// keep the single-thread kernel at its speed (docs/benchmarks.md, "GEMMs on two cores").
package enum GemmCut: Equatable, Sendable {
    case whole
    /// C's rows in blocks of this many, from the top; the last block may be shorter.
    case rows(Int)
    /// C's columns in blocks of this many, from the left.
    case columns(Int)

    /// Below this many multiply-adds a second thread costs more to wake than it saves.
    package static let minimumWork = 1 << 22
    /// The widest block: 512 rows or columns.
    package static let widest = 512

    package static func of(m: Int, n: Int, k: Int) -> GemmCut {
        guard m > 0, n > 0, k > 0, Double(m) * Double(n) * Double(k) >= Double(minimumWork) else { return .whole }
        if m >= 128 { return .rows(block(m)) }
        if n >= 256 { return .columns(block(n)) }
        return .whole
    }

    /// 512 from 1024 on; below, half of `size` rounded up to a multiple of 64.
    private static func block(_ size: Int) -> Int {
        size >= 2 * widest ? widest : (size / 2 + 63) / 64 * 64
    }

    /// How many pieces a product of m × n has under this cut.
    package func pieces(m: Int, n: Int) -> Int {
        switch self {
        case .whole: return 1
        case .rows(let r): return (m + r - 1) / r
        case .columns(let w): return (n + w - 1) / w
        }
    }
}

/// C[m×n] = alpha·op(A)·op(B) + beta·C, row-major, cut by `GemmCut.of(m:n:k:)` and its pieces
/// run on the process's threads (`parallelPieces`), each at `precision` (`onePiece`).
/// `cut: false` for a GEMM that already runs as one of several side-by-side tasks (an
/// expert's, a head's): it stays one call.
@inline(__always)
package func cutGEMM(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                     _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int, beta: Float = 0,
                     _ c: UnsafeMutablePointer<Float>, ldc: Int, cut: Bool = true,
                     precision: MatmulPrecision = MatmulPrecision.current) {
    Threads.blasOnOneThread()
    let plan = cut ? GemmCut.of(m: m, n: n, k: k) : .whole
    switch plan {
    case .whole:
        onePiece(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, precision)
    case .rows(let r):
        parallelPieces(plan.pieces(m: m, n: n)) { i in
            let r0 = i * r
            // Row r0 of op(A): column r0 of a transposed A's storage.
            onePiece(transA, transB, Swift.min(r, m - r0), n, k, alpha, transA ? a + r0 : a + r0 * lda, lda, b, ldb,
                     beta, c + r0 * ldc, ldc, precision)
        }
    case .columns(let w):
        parallelPieces(plan.pieces(m: m, n: n)) { i in
            let c0 = i * w
            // Column c0 of op(B): row c0 of a transposed B's storage.
            onePiece(transA, transB, m, Swift.min(w, n - c0), k, alpha, a, lda, transB ? b + c0 * ldb : b + c0, ldb,
                     beta, c + c0, ldc, precision)
        }
    }
}

/// One piece on the calling thread: `cblas_sgemm` (one OpenBLAS thread), or the bfloat16 GEMM
/// for a piece of at least `MatmulPrecision.bf16MinimumSide` rows and columns.
@inline(__always)
func onePiece(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
              _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float,
              _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ precision: MatmulPrecision) {
    let bf16 = precision == .bf16 && m >= MatmulPrecision.bf16MinimumSide && n >= MatmulPrecision.bf16MinimumSide
    switch bf16 {
    case true where MatmulPrecision.nativeBF16:
        dt_bf16_gemm(transA, transB, Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    case true:
        emulatedBF16(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    case false:
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}

/// bf16 products without AVX512-BF16: the operands' bfloat16 values (compact copies) through
/// `cblas_sgemm`. The same rounding of the operands; float32 sums in OpenBLAS's order.
func emulatedBF16(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                  _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float,
                  _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
    guard m > 0, n > 0, k > 0 else {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
        return
    }
    // Stored shapes: A is m × k (k × m transposed), B is k × n (n × k transposed).
    let (ar, ac) = transA ? (k, m) : (m, k), (br, bc) = transB ? (n, k) : (k, n)
    let ra = UnsafeMutablePointer<Float>.allocate(capacity: ar * ac), rb = UnsafeMutablePointer<Float>.allocate(capacity: br * bc)
    defer { ra.deallocate(); rb.deallocate() }
    for i in 0..<ar { for j in 0..<ac { ra[i * ac + j] = BFloat16.rounded(a[i * lda + j]) } }
    for i in 0..<br { for j in 0..<bc { rb[i * bc + j] = BFloat16.rounded(b[i * ldb + j]) } }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, ra, Int32(ac), rb, Int32(bc), beta, c, Int32(ldc))
}
