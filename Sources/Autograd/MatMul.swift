import CBLAS

/// Matrix products on `cblas_sgemm`. A transposed view (strides swapped on the last two axes)
/// is passed to BLAS as a transpose flag with its leading dimension, never copied.

/// How one matrix (the last two axes of a tensor) reaches BLAS.
struct BlasMatrix {
    let base: Tensor        // keeps the storage alive
    let pointer: UnsafeMutablePointer<Float>
    let trans: Bool
    let ld: Int

    /// `t` as a BLAS operand at storage offset `offset` (the start of one batch item).
    init(_ t: Tensor, offset: Int) {
        let r = t.shape[t.rank - 2], c = t.shape[t.rank - 1]
        let sr = t.strides[t.rank - 2], sc = t.strides[t.rank - 1]
        base = t
        pointer = t.storage.data + offset
        if (sc == 1 || c == 1) && (r == 1 || sr >= c) {
            trans = false
            ld = r == 1 ? Swift.max(c, 1) : sr
        } else {
            // Only reached for views whose rows are strided: callers guarantee `blasCompatible`.
            trans = true
            ld = c == 1 ? Swift.max(r, 1) : sc
        }
    }

    static func compatible(_ t: Tensor) -> Bool {
        let r = t.shape[t.rank - 2], c = t.shape[t.rank - 1]
        let sr = t.strides[t.rank - 2], sc = t.strides[t.rank - 1]
        return ((sc == 1 || c == 1) && (r == 1 || sr >= c)) || ((sr == 1 || r == 1) && (c == 1 || sc >= r))
    }
}

/// C[m×n] = alpha·op(A)·op(B) + beta·C, row-major, cut as `cutGEMM` cuts it.
@inline(__always)
func sgemm(_ a: BlasMatrix, _ b: BlasMatrix, m: Int, n: Int, k: Int,
           c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float = 1, beta: Float = 0) {
    profiledGEMM(transA: a.trans, transB: b.trans, m: m, n: n, k: k, alpha: alpha, a.pointer, lda: a.ld, b.pointer, ldb: b.ld,
                 beta: beta, c, ldc: ldc)
}

/// C[m×n] = alpha·op(A)·op(B) + beta·C on row-major pointers (`cutGEMM`), which
/// `DEEPTRAIN_PROFILE=1` times into the profiler's table of GEMMs by shape. `tokens` says which
/// dimension is an expert's routed token count or a cache's length (0: M, 1: N, 2: K), so its
/// varying sizes share a row; such a GEMM runs as one of several tasks side by side and is not
/// cut further (nor is one given `cut: false`).
@inline(__always)
package func profiledGEMM(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                         _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int, beta: Float = 0,
                         _ c: UnsafeMutablePointer<Float>, ldc: Int, tokens: Int? = nil, cut: Bool = true,
                         precision: MatmulPrecision = MatmulPrecision.current) {
    Profiler.gemm(m, n, k, transA: transA, transB: transB, tokens: tokens) {
        cutGEMM(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a, lda: lda, b, ldb: ldb, beta: beta,
                c, ldc: ldc, cut: cut && tokens == nil, precision: precision)
    }
}

extension Tensor {
    /// `project`'s split of a wide output at few rows: at most this many rows, blocks of this many columns.
    package static let fewRows = 16, columnBlock = 512

    /// out[r, 0..<outF] = x[r]·Wᵀ for `rows` rows of x [rows, inF] and W [outF, inF], rows of
    /// `out` `ldo` apart: `linear`'s forward GEMM. Decoding's few rows go in column blocks, one
    /// BLAS thread each, as tasks (on both cores while the decoding worker serves):
    /// - a wide weight (the vocabulary projection) in blocks of 512: OpenBLAS leaves its
    ///   small-matrix path there and packs the whole weight for one row, many times slower than
    ///   the same work in blocks (`bench gemm` figures: docs/benchmarks.md, "Generation");
    /// - 128–512 outputs in two halves at a multiple of 64 columns, each streaming half the weight.
    /// The split is the same whatever the thread count, so the bits do not depend on it (at
    /// several rows a split can change them; at one row and up to 64³ multiply-adds OpenBLAS's
    /// small kernel gives the unsplit call's bits: checked for all 11 x86 kernels).
    static func project(_ x: UnsafePointer<Float>, rows: Int, inFeatures inF: Int, weight w: UnsafePointer<Float>,
                        outFeatures outF: Int, into out: UnsafeMutablePointer<Float>, ldo: Int,
                        precision: MatmulPrecision = MatmulPrecision.current) {
        guard rows <= fewRows && outF >= 128 else {
            profiledGEMM(transA: false, transB: true, m: rows, n: outF, k: inF, x, lda: inF, w, ldb: inF, out, ldc: ldo,
                         precision: precision)
            return
        }
        let width = outF > columnBlock ? columnBlock : (outF / 2 + 63) / 64 * 64
        parallelTasks([Int](repeating: 1, count: (outF + width - 1) / width)) { i in
            let c0 = i * width, n = Swift.min(width, outF - c0)
            profiledGEMM(transA: false, transB: true, m: rows, n: n, k: inF, x, lda: inF, w + c0 * inF, ldb: inF, out + c0, ldc: ldo,
                         cut: false, precision: precision)
        }
    }

    /// Matrix product over the last two axes. `a` is [..., M, K]; `b` is [K, N] (shared by every
    /// batch item: one GEMM over all rows) or [..., K, N] with the same batch shape as `a`.
    package func matmul(_ b: Tensor) -> Tensor {
        let a = self
        guard a.rank >= 2, b.rank >= 2 else {
            shapeFailure("matmul", "needs matrices, got shapes \(a.shape) and \(b.shape)")
        }
        let m = a.shape[a.rank - 2], k = a.shape[a.rank - 1], n = b.shape[b.rank - 1]
        guard b.shape[b.rank - 2] == k else {
            shapeFailure("matmul", "shapes \(a.shape) and \(b.shape) do not match (inner dimensions \(k) and \(b.shape[b.rank - 2]))")
        }
        if b.rank == 2 && a.rank > 2 {
            // Fold the batch into M: one large GEMM instead of many small ones.
            let lead = Array(a.shape.dropLast())
            let flat = a.reshape([-1, k]).matmul(b)
            return flat.reshape(lead + [n])
        }
        guard a.rank == b.rank, Array(a.shape.dropLast(2)) == Array(b.shape.dropLast(2)) else {
            shapeFailure("matmul", "batch dimensions of \(a.shape) and \(b.shape) differ")
        }
        let av = BlasMatrix.compatible(a) ? a : a.clone()
        let bv = BlasMatrix.compatible(b) ? b : b.clone()
        let batchShape = Array(a.shape.dropLast(2))
        let out = Tensor(uninitialized: batchShape + [m, n])
        let batch = batchShape.reduce(1, *)
        if batch > 0 && m > 0 && n > 0 {
            let aOff = offsets(shape: batchShape, strides: Array(av.strides.dropLast(2)), offset: av.offset)
            let bOff = offsets(shape: batchShape, strides: Array(bv.strides.dropLast(2)), offset: bv.offset)
            for i in 0..<batch {
                sgemm(BlasMatrix(av, offset: aOff[i]), BlasMatrix(bv, offset: bOff[i]), m: m, n: n, k: k,
                      c: out.data + i * m * n, ldc: n)
            }
        }
        return record(out, inputs: [a, b]) { g in
            [a.requiresGrad ? g.matmul(b.detached().transposed()) : nil,
             b.requiresGrad ? a.detached().transposed().matmul(g) : nil]
        }
    }

    /// y = x·Wᵀ for x [..., in] and a weight stored [out, in] (the Hugging Face layout).
    /// Backward writes dW = gᵀ·x straight in [out, in] layout, with no transposed copy.
    /// `precision` (default: `MatmulPrecision.current`) holds for the backward's products too.
    package func linear(_ weight: Tensor, precision: MatmulPrecision = MatmulPrecision.current) -> Tensor {
        let x = self
        guard weight.rank == 2, x.rank >= 1, x.shape[x.rank - 1] == weight.shape[1] else {
            shapeFailure("linear", "input \(x.shape) does not match weight \(weight.shape) ([out, in])")
        }
        let inF = weight.shape[1], outF = weight.shape[0]
        let x2 = x.contiguousNoGrad()
        let w = weight.contiguousNoGrad()
        let rows = x.count / Swift.max(inF, 1)
        let out = Tensor(uninitialized: Array(x.shape.dropLast()) + [outF])
        if rows > 0 && outF > 0 { Self.project(x2.data, rows: rows, inFeatures: inF, weight: w.data, outFeatures: outF, into: out.data, ldo: outF, precision: precision) }
        return record(out, inputs: [x, weight]) { g in
            let gc = g.contiguousNoGrad()
            var dx: Tensor? = nil, dw: Tensor? = nil
            if x.requiresGrad {
                let t = Tensor(uninitialized: x.shape)
                profiledGEMM(transA: false, transB: false, m: rows, n: inF, k: outF, gc.data, lda: outF, w.data, ldb: inF,
                             t.data, ldc: inF, precision: precision)
                dx = t
            }
            if weight.requiresGrad {
                let t = Tensor(uninitialized: weight.shape)
                profiledGEMM(transA: true, transB: false, m: outF, n: inF, k: rows, gc.data, lda: outF, x2.data, ldb: inF,
                             t.data, ldc: inF, precision: precision)
                dw = t
            }
            return [dx, dw]
        }
    }
}
