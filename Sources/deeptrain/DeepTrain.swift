import ArgumentParser
import Foundation
import FileFormats

@main
struct DeepTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deeptrain",
        abstract: "Train DeepSeek-V2-style Mixture-of-Experts language models on MPI.",
        subcommands: [TrainCommand.self, DemoCommand.self, PlanCommand.self, ForwardCommand.self, GenerateCommand.self, ConvertCommand.self, InspectCommand.self, VerifyCommand.self, TokenizeCommand.self, PrepareCommand.self, EvalCommand.self, PlotCommand.self, BenchCommand.self, EnvCommand.self])

    static func main() {
        // OpenBLAS's kernel and OPENBLAS_THREAD_TIMEOUT are settled before main (Sources/BLASKernel).
        keepFreedMemory()
        // Writing to a reward command that already exited must be an error, not the end of
        // the rank (the default action of SIGPIPE).
        signal(SIGPIPE, SIG_IGN)
        // An HDF5 file this process did not write is read by a child process first (docs/security.md).
        HDF5Screen.check = screenInChild
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            CommandFailure.report(error)
        }
    }

    /// The step allocates and frees the same large buffers every time (flat gradients, receive
    /// buffers of the collectives, activations). glibc serves blocks above 32 MB with fresh
    /// mmaps and returns them on free, so each step would fault every page in again; keeping
    /// them in the heap lets the next step reuse them (the figures: docs/parallelism.md).
    static func keepFreedMemory() {
        #if os(Linux)
        _ = glibcMallopt(-4, 0)  // M_MMAP_MAX: no mmap'd blocks
        _ = glibcMallopt(-1, Int32.max)  // M_TRIM_THRESHOLD: never give the heap's top back
        #endif
    }
}

#if os(Linux)
/// glibc's mallopt (malloc.h is not part of the Glibc module).
@_silgen_name("mallopt") func glibcMallopt(_ param: Int32, _ value: Int32) -> Int32
#endif
