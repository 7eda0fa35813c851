import Foundation
import Testing
import CBLAS
@testable import Autograd

/// The start-up kernel selection (Sources/BLASKernel): its decision for other CPUs' features,
/// and, on this machine, the self-check and the state the constructor left.
@Suite struct KernelSelectionTests {
    static let avx2: UInt32 = bits(["sse3", "ssse3", "sse4.1", "sse4.2", "avx", "avx2", "fma"])
    static let avx512 = avx2 | bits(["avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl"])
    /// Intel Xeon family 6 model 207 (the machine of issue 11): AVX-512 with BF16 and AMX.
    static let xeon207 = avx512 | bits(["avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16"])

    static func bits(_ names: [String]) -> UInt32 {
        KernelSelection.names.filter { names.contains($0.1) }.reduce(0) { $0 | $1.0 }
    }

    @Test func weakerThanTheCPUIsReplacedByTheBestItRuns() {
        let intel: Int32 = 1, amd: Int32 = 2
        #expect(KernelSelection.decision(vendor: intel, features: Self.xeon207, current: "Prescott") == "Cooperlake")
        #expect(KernelSelection.decision(vendor: intel, features: Self.avx512, current: "Haswell") == "SkylakeX")
        #expect(KernelSelection.decision(vendor: intel, features: Self.avx2, current: "Prescott") == "Haswell")
        #expect(KernelSelection.decision(vendor: amd, features: Self.avx2, current: "Prescott") == "Zen")
        #expect(KernelSelection.decision(vendor: amd, features: Self.avx512, current: "Zen") == "SkylakeX")  // Zen 4 on an old OpenBLAS
        #expect(KernelSelection.decision(vendor: intel, features: Self.bits(["sse3", "ssse3", "sse4.1", "sse4.2"]), current: "Prescott") == "Nehalem")
    }

    @Test func asStrongAsTheCPUOrUnknownIsKept() {
        #expect(KernelSelection.decision(vendor: 2, features: Self.avx2, current: "Zen") == nil)
        #expect(KernelSelection.decision(vendor: 1, features: Self.avx2, current: "zen") == nil)  // same level, any case
        #expect(KernelSelection.decision(vendor: 1, features: Self.xeon207, current: "SapphireRapids") == nil)
        #expect(KernelSelection.decision(vendor: 1, features: Self.xeon207, current: "SkylakeX") == nil)
        #expect(KernelSelection.decision(vendor: 1, features: Self.xeon207, current: "GraniteRapids") == nil)  // not ranked
        #expect(KernelSelection.decision(vendor: 0, features: 0, current: "Prescott") == nil)  // no CPUID
    }

    @Test func theKernelInUsePassesTheSelfCheckAndIsNamed() {
        let e = KernelSelection.selfCheckError()
        #expect(e > 0 && e < 1e-5, "max relative error \(e)")
        let k = KernelSelection.current
        #expect(k.kernel == String(cString: openblas_get_corename()))
        #expect(!k.reason.isEmpty)
        #expect(!k.fellBack)
        // Every candidate is one this CPU executes; the kernel in use ranks with the best of them.
        let c = KernelSelection.candidates()
        #expect(c.first == "Prescott" && !c.isEmpty)
        if !k.userSet { #expect(c.contains { $0.caseInsensitiveCompare(k.kernel) == .orderedSame } || k.kernel == "Haswell") }
    }
}
