import Foundation
import Autograd
import CBLAS

/// `deeptrain bench gemm`: raw cblas_sgemm against `Tensor.matmul` on the same square shapes,
/// so the overhead of the tensor layer is visible as a ratio.
package enum GemmBenchmark {
    package struct Row: Codable, Sendable {
        package let n: Int
        package let threads: Int
        package let sgemmGFLOPS: Double
        package let tensorMatmulGFLOPS: Double
        package let tensorOverSgemm: Double

        enum CodingKeys: String, CodingKey {
            case n
            case threads
            case sgemmGFLOPS = "sgemm_gflops"
            case tensorMatmulGFLOPS = "tensor_matmul_gflops"
            case tensorOverSgemm = "tensor_over_sgemm"
        }
    }

    package struct Report: Codable, Sendable {
        package var benchmark = "gemm"
        package let blas: String
        package var blasKernel = KernelSelection.current.kernel
        package let repeats: Int
        package let results: [Row]

        enum CodingKeys: String, CodingKey {
            case benchmark
            case blas
            case blasKernel = "blas_kernel"
            case repeats
            case results
        }
    }

    package static func run(sizes: [Int] = [1024, 2048], threads: [Int] = [1, 2], repeats: Int = 5) -> Report {
        let saved = Threads.count
        defer { Threads.set(saved) }
        var rows: [Row] = []
        for t in threads {
            Threads.set(t)
            for n in sizes {
                let rng = Philox(seed: 7, purpose: "bench-gemm")
                let a = Tensor.rand([n, n], rng: rng), b = Tensor.rand([n, n], rng: Philox(seed: 8, purpose: "bench-gemm"))
                let c = Tensor(zeros: [n, n])
                let flops = 2 * Double(n) * Double(n) * Double(n)
                // Interleave the two so that clock or thermal drift hits both alike.
                var raw = Double.infinity, mine = Double.infinity
                _ = a.matmul(b)
                for _ in 0..<repeats {
                    let t0 = now()
                    Threads.withBLASThreads(t) {
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n), 1,
                                    a.data, Int32(n), b.data, Int32(n), 0, c.data, Int32(n))
                    }
                    let t1 = now()
                    _ = withNoGrad { a.matmul(b) }
                    let t2 = now()
                    raw = min(raw, t1 - t0)
                    mine = min(mine, t2 - t1)
                }
                rows.append(Row(n: n, threads: t, sgemmGFLOPS: flops / raw / 1e9,
                                tensorMatmulGFLOPS: flops / mine / 1e9, tensorOverSgemm: raw / mine))
            }
        }
        return Report(blas: blasDescription, repeats: repeats, results: rows)
    }

    /// One shape: OpenBLAS splitting the call over its own threads (`gflops`), DeepTrain's fixed
    /// cut (`GemmCut`) run as single-threaded pieces on the same number of threads, and the same
    /// cut at `precision: bf16` (`bf16_path` says whether on AVX512-BF16 or emulated).
    package struct ShapeRow: Codable, Sendable {
        package let m: Int, n: Int, k: Int
        package let transA: Bool, transB: Bool
        package let threads: Int
        package let gflops: Double
        package let fractionOfPeak: Double
        package let cut: String
        package let cutGFLOPS: Double
        package let cutFractionOfPeak: Double
        package let bf16GFLOPS: Double
        package let bf16Path: String

        enum CodingKeys: String, CodingKey {
            case m
            case n
            case k
            case transA = "trans_a"
            case transB = "trans_b"
            case threads
            case gflops
            case fractionOfPeak = "fraction_of_peak"
            case cut
            case cutGFLOPS = "cut_gflops"
            case cutFractionOfPeak = "cut_fraction_of_peak"
            case bf16GFLOPS = "bf16_gflops"
            case bf16Path = "bf16_path"
        }
    }

    package struct ShapeReport: Codable, Sendable {
        package var benchmark = "gemm-shapes"
        package var blasKernel = KernelSelection.current.kernel
        package let peakSgemmGFLOPS: Double
        package let results: [ShapeRow]
        package init(peakSgemmGFLOPS: Double, results: [ShapeRow]) {
            self.peakSgemmGFLOPS = peakSgemmGFLOPS
            self.results = results
        }

        enum CodingKeys: String, CodingKey {
            case benchmark
            case blasKernel = "blas_kernel"
            case peakSgemmGFLOPS = "peak_sgemm_gflops"
            case results
        }
    }

    /// Raw sgemm at given (M, N, K, transposes): the shapes a model's layers produce, to see
    /// how far each falls below the square-matrix peak.
    package static func shapes(_ list: [(Int, Int, Int, Bool, Bool)], threads: Int, peak: Double, repeats: Int = 10) -> [ShapeRow] {
        let saved = Threads.count
        defer { Threads.set(saved) }
        Threads.set(threads)
        return list.map { (m, n, k, ta, tb) in
            let a = Tensor.rand([m * k], rng: Philox(seed: 1)), b = Tensor.rand([k * n], rng: Philox(seed: 2))
            let c = Tensor(zeros: [m * n])
            let lda = ta ? m : k, ldb = tb ? k : n
            var best = Double.infinity, bestCut = Double.infinity, bestBF16 = Double.infinity
            // Alternated, so that another tenant's load hits both alike.
            for _ in 0...repeats {
                let t0 = now()
                Threads.withBLASThreads(threads) {
                    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                                Int32(m), Int32(n), Int32(k), 1, a.data, Int32(lda), b.data, Int32(ldb), 0, c.data, Int32(n))
                }
                let t1 = now()
                cutGEMM(transA: ta, transB: tb, m: m, n: n, k: k, a.data, lda: lda, b.data, ldb: ldb, c.data, ldc: n)
                let t2 = now()
                cutGEMM(transA: ta, transB: tb, m: m, n: n, k: k, a.data, lda: lda, b.data, ldb: ldb, c.data, ldc: n, precision: .bf16)
                let t3 = now()
                best = min(best, t1 - t0)
                bestCut = min(bestCut, t2 - t1)
                bestBF16 = min(bestBF16, t3 - t2)
            }
            let flops = 2 * Double(m) * Double(n) * Double(k)
            let gf = flops / best / 1e9, cgf = flops / bestCut / 1e9
            return ShapeRow(m: m, n: n, k: k, transA: ta, transB: tb, threads: threads, gflops: gf, fractionOfPeak: gf / peak,
                            cut: "\(GemmCut.of(m: m, n: n, k: k))", cutGFLOPS: cgf, cutFractionOfPeak: cgf / peak,
                            bf16GFLOPS: flops / bestBF16 / 1e9, bf16Path: MatmulPrecision.bf16Path)
        }
    }

    package static var blasDescription: String {
        KernelSelection.openblasConfig + " core=" + KernelSelection.current.kernel
    }
}
