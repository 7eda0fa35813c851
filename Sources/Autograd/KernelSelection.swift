import BLASKernel
import CBLAS

/// Which OpenBLAS kernel this process computes with, and why: the CPU as CPUID describes it,
/// OpenBLAS's own choice, and what the start-up selection (Sources/BLASKernel, before main) did
/// with it. Every benchmark names `kernel`; `deeptrain env` prints all of it.
package struct KernelSelection: Sendable, Codable {
    package let cpu: String
    package let vendor: String
    package let family: Int
    package let model: Int
    package let features: [String]
    package let kernel: String
    package let openblasChoice: String
    package let reason: String
    package let userSet: Bool
    package let fellBack: Bool

    /// OpenBLAS's build line ("OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64").
    package static var openblasConfig: String {
        openblas_get_config().map { String(cString: $0) } ?? "unknown"
    }

    package static let current: KernelSelection = {
        let c = dt_cpu_read(), s = dt_kernel_state_read()
        return KernelSelection(
            cpu: cString(c.brand), vendor: ["other", "Intel", "AMD"][Int(c.vendor)], family: Int(c.family), model: Int(c.model),
            features: featureNames(c.features), kernel: cString(s.kernel), openblasChoice: cString(s.openblas_choice),
            reason: cString(s.reason), userSet: s.user_set, fellBack: s.fell_back)
    }()

    static let names: [(UInt32, String)] = {
        let bits: [(dt_feature, String)] = [
            (DT_SSE3, "sse3"), (DT_SSSE3, "ssse3"), (DT_SSE41, "sse4.1"), (DT_SSE42, "sse4.2"), (DT_AVX, "avx"),
            (DT_AVX2, "avx2"), (DT_FMA, "fma"), (DT_AVX512F, "avx512f"), (DT_AVX512DQ, "avx512dq"), (DT_AVX512CD, "avx512cd"),
            (DT_AVX512BW, "avx512bw"), (DT_AVX512VL, "avx512vl"), (DT_AVX512_BF16, "avx512_bf16"),
            (DT_AVX512_VNNI, "avx512_vnni"), (DT_AMX_TILE, "amx_tile"), (DT_AMX_BF16, "amx_bf16"),
        ]
        return bits.map { (UInt32($0.0.rawValue), $0.1) }
    }()

    package static func featureNames(_ bits: UInt32) -> [String] { names.filter { bits & $0.0 != 0 }.map(\.1) }

    /// The kernels of OpenBLAS's x86-64 list that this CPU can execute, weakest first, with the
    /// ones worth comparing (one per ISA level, both AVX-512 variants): `bench gemm --kernels`.
    package static func candidates(features: UInt32 = dt_cpu_read().features) -> [String] {
        ["Prescott", "Nehalem", "Sandybridge", "Haswell", "Zen", "SkylakeX", "Cooperlake"].filter { k in
            k.withCString { dt_kernel_needs($0) } & ~features == 0
        }
    }

    /// The selection's decision for a CPU with these features, without running anything.
    package static func decision(vendor: Int32, features: UInt32, current: String) -> String? {
        var c = dt_cpu()
        c.vendor = vendor
        c.features = features
        return current.withCString { dt_kernel_to_select(&c, $0) }.map { String(cString: $0) }
    }

    package static func selfCheckError() -> Double { dt_sgemm_self_check() }
}

private func cString<T>(_ tuple: T) -> String {
    withUnsafeBytes(of: tuple) { raw in
        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
    }
}
