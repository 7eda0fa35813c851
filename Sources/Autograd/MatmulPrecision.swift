import Foundation
import BF16GEMM

/// The arithmetic of the matrix products (recipe `precision`, docs/design.md §7, "Mixed
/// precision"). Weights, activations, gradients and the optimizer stay float32 either way.
package enum MatmulPrecision: String, CaseIterable, Sendable {
    /// float32 products (`cblas_sgemm`).
    case fp32
    /// Operands rounded to bfloat16, products summed in float32: `vdpbf16ps` where the CPU has
    /// AVX512-BF16, about twice float32's speed; elsewhere the same rounding on `cblas_sgemm`
    /// (other bits, float32's speed).
    case bf16

    nonisolated(unsafe) package private(set) static var current: MatmulPrecision = .fp32

    /// A bf16 product of fewer rows or columns than this runs in float32: the kernel rounds and
    /// packs the whole other operand for them (one row: 5 GFLOP/s against sgemm's 43; from 32
    /// rows on it is ahead — docs/benchmarks.md, "Mixed precision"). Decoding stays float32.
    package static let bf16MinimumSide = 32

    package static func set(_ p: MatmulPrecision) { current = p }

    /// Runs `body` at precision `p`, then restores the one before (tests, benchmarks).
    package static func with<R>(_ p: MatmulPrecision, _ body: () throws -> R) rethrows -> R {
        let saved = current
        current = p
        defer { current = saved }
        return try body()
    }

    /// Whether bf16 products run on `vdpbf16ps`: the CPU has it, and `DEEPTRAIN_BF16=emulate`
    /// does not ask for the fallback (tests of the fallback on such a CPU).
    package static let nativeBF16: Bool =
        dt_bf16_supported() && ProcessInfo.processInfo.environment["DEEPTRAIN_BF16"] != "emulate"

    /// How bf16 products run on this machine, for the benchmarks' JSON and `deeptrain env`.
    package static var bf16Path: String { nativeBF16 ? "avx512-bf16" : "emulated on sgemm" }
}
