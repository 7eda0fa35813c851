import ArgumentParser
import Autograd
import Training

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks that print JSON.",
        subcommands: [Gemm.self, Train.self])

    struct Gemm: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "GFLOP/s of raw cblas_sgemm and of Tensor.matmul.")
        @Option(parsing: .upToNextOption, help: "Square sizes.") var sizes: [Int] = [1024, 2048]
        @Option(parsing: .upToNextOption, help: "Thread counts.") var threads: [Int] = [1, 2]
        @Option(help: "Timed repetitions (best is reported).") var repeats = 5

        func run() throws {
            print(jsonString(GemmBenchmark.run(sizes: sizes, threads: threads, repeats: repeats)))
        }
    }

    struct Train: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Training-step throughput, phase times, MFU and peak RSS.")
        @Option(help: "Model to benchmark: dense.") var model = "dense"
        @Option(help: "Sequences per step.") var batch = 8
        @Option(help: "Tokens per sequence.") var length = 256
        @Option(help: "Untimed warm-up steps.") var warmup = 2
        @Option(help: "Timed steps.") var steps = 5
        @Option(help: "Threads for BLAS and fused loops.") var threads = 2

        func validate() throws {
            guard model == "dense" else {
                throw ValidationError("--model \(model) is not available yet; expected: dense")
            }
            guard batch > 0, length > 0, length <= 256, steps > 0, warmup >= 0, threads > 0 else {
                throw ValidationError("--batch, --steps, --threads must be positive, --length in 1...256")
            }
        }

        func run() throws {
            print(jsonString(TrainBenchmark.dense(batch: batch, length: length, warmup: warmup, steps: steps, threads: threads)))
        }
    }
}
