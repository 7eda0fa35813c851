import ArgumentParser
import Autograd
import CHDF5
import CMPI
import Collectives
import Training

/// The machine as DeepTrain sees it: CPU and features, the BLAS kernel in use and why, the
/// cached sgemm peak that MFU divides by, and the versions of the linked C libraries.
struct EnvCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "env",
        abstract: "CPU, BLAS kernel (and why it was chosen), sgemm peak, and the linked MPI, BLAS and HDF5.",
        discussion: "The sgemm peak is measured once per machine, kernel and thread count and cached in \(SgemmPeak.cacheFile); --measure measures it again.")

    @Flag(help: "Measure the sgemm peak again (1 thread and all cores) and replace the cached figures.")
    var measure = false

    func run() throws {
        let mpi = Communicator.libraryVersion
        var maj: UInt32 = 0, min: UInt32 = 0, rel: UInt32 = 0
        H5get_libversion(&maj, &min, &rel)
        let k = KernelSelection.current
        print("cpu:      \(k.cpu.isEmpty ? "?" : k.cpu) (\(k.vendor), family \(k.family), model \(k.model))")
        print("features: \(k.features.joined(separator: " "))")
        print("blas:     \(KernelSelection.openblasConfig)")
        print("kernel:   \(k.kernel)" + (k.userSet ? " (OPENBLAS_CORETYPE from the environment)" : " (OpenBLAS's own choice: \(k.openblasChoice))"))
        print("why:      \(k.reason)")
        print("bf16:     precision: bf16 runs " + (MatmulPrecision.nativeBF16 ? "on AVX512-BF16 (vdpbf16ps), about twice float32's speed"
                                                   : "emulated on sgemm (this CPU has no AVX512-BF16, or DEEPTRAIN_BF16=emulate): float32's speed"))
        var threads = [1, Communicator.defaultThreads]
        threads = Array(Set(threads)).sorted()
        let peaks = threads.map { t -> String in
            // Without --measure, only what is cached: a first training run or bench measures it.
            let measured = measure ? SgemmPeak.measure(threads: t) : nil
            guard let e = measured?.entry ?? SgemmPeak.cached(threads: t) else {
                return "\(t) thread\(t == 1 ? "" : "s") not measured yet (deeptrain env --measure)"
            }
            return String(format: "%d thread%@ %.0f GFLOP/s (measured %@%@)", t, t == 1 ? "" : "s", e.gflops, e.measuredAt,
                          measured?.busy == true ? "; the machine was busy: not cached" : "")
        }
        print("peak:     sgemm 2048², " + peaks.joined(separator: ", ") + "; cache \(SgemmPeak.cacheFile)")
        print("mpi:      \(mpi)")
        print("hdf5:     \(maj).\(min).\(rel)")
    }
}
