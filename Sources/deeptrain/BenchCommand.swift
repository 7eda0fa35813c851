import ArgumentParser
import Foundation
import FileSafety
import Autograd
import Collectives
import DeepSeek
import Parallel
import Training
import Benchmarks
import Data

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks that print JSON.",
        subcommands: [Gemm.self, Train.self, Attention.self, Generate.self, DataThroughput.self, Tokenize.self, Comm.self, Dispatch.self,
                      Compare.self, Baseline.self])

    /// Bench JSONs from files: (name, object).
    static func readRuns(_ paths: [String]) throws -> [(name: String, json: [String: Any])] {
        try paths.map { path in
            let data = try readBoundedFile(path, limit: 1 << 20, what: "bench JSON")
            guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                throw ValidationError("\(path): not a JSON object as a bench command prints")
            }
            return (path, json)
        }
    }

    struct Compare: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Compare bench runs with the stored baseline of their machine kind: which figures moved beyond the noise.",
            discussion: """
            Each RUN is the JSON one `deeptrain bench train` run printed (save it: `... > run1.json`); \
            give several runs of the same benchmark (five, alternated with nothing else running) and \
            their medians are compared. A figure is worse or better when it leaves the baseline runs' \
            own range widened by 3% of their median. Prints JSON; exits 0 when no figure is worse, \
            2 when some are, 1 when no baseline matches (docs/benchmarks.md, "Regression guard").
            """)
        @Option(help: "The baseline file (default: the project's, docs/baselines.json).") var baseline = "docs/baselines.json"
        @Argument(help: "Bench JSON files of the runs to compare.") var runs: [String]

        func run() throws {
            let file = try JSONDecoder().decode(BenchBaseline.File.self, from: readBoundedFile(baseline, limit: 16 << 20, what: "baseline"))
            do {
                let report = try BenchBaseline.compare(BenchCommand.readRuns(runs), with: file, path: baseline)
                print(jsonString(report))
                for m in report.figures where m.verdict != "within noise" {
                    FileHandle.standardError.write(Data("\(m.figure): \(m.verdict), \(String(format: "%+.1f", m.changePercent))% (\(m.baseline) → \(m.now))\n".utf8))
                }
                if !report.worse.isEmpty { throw ExitCode(2) }
            } catch let p as BenchBaseline.Problem {
                FileHandle.standardError.write(Data("error: \(p)\n".utf8))
                throw ExitCode(1)
            }
        }
    }

    struct Baseline: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Record bench runs as the baseline of their machine kind.",
            discussion: """
            Replaces the entry with the same benchmark, settings and machine kind in the file (others \
            are kept). Record from five runs alternated with nothing else on the machine; commit the \
            file with the build it measured (docs/benchmarks.md, "Regression guard").
            """)
        @Option(help: "The baseline file to update (created if missing).") var output = "docs/baselines.json"
        @Argument(help: "Bench JSON files of the runs.") var runs: [String]

        func run() throws {
            var file = BenchBaseline.File()
            if FileManager.default.fileExists(atPath: output) {
                file = try JSONDecoder().decode(BenchBaseline.File.self, from: readBoundedFile(output, limit: 16 << 20, what: "baseline"))
            }
            do {
                file = try BenchBaseline.record(BenchCommand.readRuns(runs), into: file)
            } catch let p as BenchBaseline.Problem {
                FileHandle.standardError.write(Data("error: \(p)\n".utf8))
                throw ExitCode(1)
            }
            try (jsonString(file) + "\n").write(toFile: output, atomically: true, encoding: .utf8)
            FileHandle.standardError.write(Data("recorded \(runs.count) runs in \(output) (\(file.entries.count) entries)\n".utf8))
        }
    }

    struct Gemm: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "GFLOP/s of raw cblas_sgemm and of Tensor.matmul.")
        @Option(parsing: .upToNextOption, help: "Square sizes.") var sizes: [Int] = [1024, 2048]
        @Option(parsing: .upToNextOption, help: "Thread counts.") var threads: [Int] = [1, 2]
        @Option(help: "Timed repetitions (best is reported).") var repeats = 10
        @Option(parsing: .upToNextOption,
                help: "Instead of square sizes, raw sgemm at shapes MxNxK[:TA][:TB] (e.g. 2048x256x256:N:T).")
        var shapes: [String] = []
        @Flag(help: "Run the square sizes once per OpenBLAS kernel this CPU can execute, each in a child process (OPENBLAS_CORETYPE), and compare them with the kernel in use.")
        var kernels = false

        func run() throws {
            if kernels {
                print(jsonString(try KernelComparison.run(sizes: sizes, threads: threads, repeats: repeats)))
                return
            }
            if shapes.isEmpty {
                print(jsonString(GemmBenchmark.run(sizes: sizes, threads: threads, repeats: repeats)))
                return
            }
            let parsed = try shapes.map { s -> (Int, Int, Int, Bool, Bool) in
                let parts = s.split(separator: ":")
                let dims = parts[0].split(separator: "x").compactMap { Int($0) }
                guard dims.count == 3, dims.allSatisfy({ $0 > 0 }), parts.count <= 3,
                      parts.dropFirst().allSatisfy({ $0 == "N" || $0 == "T" }) else {
                    throw ValidationError("--shapes \(s): expected MxNxK with optional :N|T:N|T, e.g. 2048x256x256:N:T")
                }
                return (dims[0], dims[1], dims[2], parts.count > 1 && parts[1] == "T", parts.count > 2 && parts[2] == "T")
            }
            for t in threads {
                let peak = SgemmPeak.sgemmGFLOPS(threads: t)
                print(jsonString(GemmBenchmark.ShapeReport(peakSgemmGFLOPS: peak,
                                                           results: GemmBenchmark.shapes(parsed, threads: t, peak: peak, repeats: repeats))))
            }
        }
    }

    struct Train: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Training-step throughput, phase times, MFU and peak RSS.")
        @Option(help: "Model to benchmark: dense (the Llama-style baseline) or small (the DeepSeek-V2 small preset).") var model = "dense"
        @Option(help: "Sequences per step.") var batch = 8
        @Option(help: "Tokens per sequence.") var length = 256
        @Option(help: "Untimed warm-up steps.") var warmup = 2
        @Option(help: "Timed steps.") var steps = 5
        @Option(help: "Threads for BLAS and fused loops (per rank; default: the rank's share of the cores).") var threads: Int?
        @Option(help: "Under mpirun: expert-parallel degree (the ranks' experts split over groups of this many; it divides the ranks).") var ep = 1
        @Option(help: "With --model small: what gradients and dispatched rows travel as, fp32 or bf16 (parallel.comm_dtype; docs/recipes.md).") var commDtype = "fp32"
        @Option(help: "The matrix products' arithmetic, fp32 or bf16 (the recipe's `precision`; docs/recipes.md).") var precision = "fp32"

        func validate() throws {
            guard model == "dense" || model == "small" else {
                throw ValidationError("--model \(model): expected dense or small")
            }
            guard MatmulPrecision(rawValue: precision) != nil else {
                throw ValidationError("--precision \(precision): expected fp32 or bf16")
            }
            guard CommDType(rawValue: commDtype) != nil else {
                throw ValidationError("--comm-dtype \(commDtype): expected fp32 or bf16")
            }
            guard ep == 1 || Communicator.launchedByMPI else {
                throw ValidationError("--ep \(ep) splits the experts over ranks: run under mpirun (one process holds them all)")
            }
            guard batch > 0, length > 0, length <= 256, steps > 0, warmup >= 0, (threads ?? 1) > 0 else {
                throw ValidationError("--batch, --steps, --threads must be positive, --length in 1...256")
            }
        }

        func run() throws {
            let threads = self.threads ?? Communicator.defaultThreads
            MatmulPrecision.set(MatmulPrecision(rawValue: precision)!)
            if Communicator.launchedByMPI {
                // Under mpirun: data parallel over all ranks, one micro-batch each.
                guard model == "small" else { throw ValidationError("--model dense runs on one process; under mpirun use --model small") }
                let world = try Communicator.world()
                var problem: String? = nil
                if batch % world.size != 0 {
                    problem = "--batch \(batch) must be divisible by the \(world.size) ranks"
                } else if ep <= 0 || world.size % ep != 0 {
                    problem = "--ep \(ep) must divide the \(world.size) ranks"
                }
                if let problem {
                    // Every rank finds it; one says it.
                    if world.rank == 0 { throw ValidationError(problem) }
                    throw ExitCode.validationFailure
                }
                let grid = try ProcessGrid(layout: Layout(dp: world.size, ep: ep, pp: 1, microbatches: world.size), world: world,
                                           layers: DeepSeekConfig.small.numHiddenLayers)
                Threads.set(threads)
                let peak = try SgemmPeak.job(world: world, threads: threads)
                let r = TrainBenchmark.moe(batch: batch, length: length, warmup: warmup, steps: steps, threads: threads, peak: peak, grid: grid,
                                           commDType: CommDType(rawValue: commDtype)!)
                if world.rank == 0 { print(jsonString(r)) }
            } else if model == "small" {
                print(jsonString(TrainBenchmark.moe(batch: batch, length: length, warmup: warmup, steps: steps, threads: threads,
                                                    commDType: CommDType(rawValue: commDtype)!)))
            } else {
                print(jsonString(TrainBenchmark.dense(batch: batch, length: length, warmup: warmup, steps: steps, threads: threads)))
            }
        }
    }

    struct Attention: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The fused attention kernel alone, forward and backward.")
        @Option(help: "Batch.") var batch = 8
        @Option(help: "Sequence length.") var length = 256
        @Option(help: "Heads.") var heads = 8
        @Option(help: "q/k head dim.") var dk = 32
        @Option(help: "v head dim.") var dv = 32
        @Flag(help: "Non-causal attention.") var full = false
        @Option(help: "Threads.") var threads = 2
        @Option(help: "The products' arithmetic, fp32 or bf16 (the recipe's `precision`; docs/recipes.md).") var precision = "fp32"

        func run() throws {
            guard let arithmetic = MatmulPrecision(rawValue: precision) else {
                throw ValidationError("--precision \(precision): expected fp32 or bf16")
            }
            print(jsonString(OpBenchmark.attention(batch: batch, length: length, heads: heads, dk: dk, dv: dv,
                                                   causal: !full, threads: threads, precision: arithmetic)))
        }
    }

    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Greedy decoding speed and cache bytes per token: MLA's latent cache against a full K/V cache.",
            discussion: """
            With --generations G: GRPO-shaped rollouts instead — G sampled completions of each of \
            --prompts P prompts (the demo's GRPO: --model tiny --prompts 16 --generations 8 \
            --prompt 24 --new-tokens 12), decoded one request at a time and per prompt (one \
            prefill, G rows decoding together), as tokens/s of each.
            """)
        @Option(help: "Model preset.") var model = "small"
        @Option(help: "Prompt tokens.") var prompt = 64
        @Option(help: "Tokens to generate.") var newTokens = 128
        @Option(help: "Sequences decoded together (greedy, equal-length prompts).") var batch = 1
        @Option(help: "Completions per prompt: time GRPO-shaped rollouts (sampled) instead of greedy decoding.") var generations: Int?
        @Option(help: "Prompts of the rollouts (with --generations).") var prompts = 16
        @Option(help: "Sampling temperature of the rollouts (with --generations).") var temperature: Float = 1
        @Option(help: "Threads.") var threads = 2

        func validate() throws {
            guard prompt > 0, newTokens > 0, threads > 0, batch > 0, prompts > 0, (generations ?? 1) > 0 else {
                throw ValidationError("--prompt, --new-tokens, --batch, --prompts, --generations, --threads must be positive")
            }
            guard temperature > 0, temperature.isFinite else { throw ValidationError("--temperature must be positive") }
            guard ["tiny", "tiny-v3", "small"].contains(model) else {
                throw ValidationError("--model \(model): expected tiny, tiny-v3 or small (the released sizes do not fit a CPU benchmark)")
            }
        }

        func run() throws {
            if let generations {
                print(jsonString(RolloutBenchmark.run(config: try DeepSeekConfig.preset(model), name: model, prompts: prompts,
                                                      generations: generations, prompt: prompt, newTokens: newTokens,
                                                      temperature: temperature, threads: threads)))
                return
            }
            print(jsonString(GenerateBenchmark.run(config: try DeepSeekConfig.preset(model), name: model, prompt: prompt,
                                                   newTokens: newTokens, batch: batch, threads: threads)))
        }
    }

    struct DataThroughput: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "data",
            abstract: "Tokens/s of prepare and of the shard loader, against the tiny model's training tokens/s.")
        @Option(help: "Corpus size in MB.") var megabytes = 4

        func run() throws {
            print(jsonString(try DataBenchmark.run(megabytes: megabytes)))
        }
    }

    struct Tokenize: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Tokens/s of encoding a text file with a tokenizer.json, on one thread.",
            discussion: "e.g. deeptrain bench tokenize --tokenizer Tests/Fixtures/tokenizers/deepseek --corpus Tests/Fixtures/tokenizers/corpus.txt")
        @Option(help: "A tokenizer.json, or a directory holding one.") var tokenizer: String
        @Option(help: "A UTF-8 text file, encoded as one text.") var corpus: String
        @Option(help: "Timed repetitions after the first (cold) encode; the best is reported.") var repeats = 20

        func validate() throws {
            guard repeats > 0 else { throw ValidationError("--repeats must be positive") }
        }

        func run() throws {
            print(jsonString(try TokenizeBenchmark.run(tokenizer: tokenizer, corpus: corpus, repeats: repeats)))
        }
    }
}

extension BenchCommand {
    struct Comm: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Allreduce and all-to-all bandwidth of the communicator against raw MPI calls (run under mpirun).",
            discussion: "launch: mpirun --allow-run-as-root -np 2 --bind-to none .build/release/deeptrain bench comm")
        @Option(parsing: .upToNextOption, help: "Vector sizes in floats.") var sizes: [Int] = [1 << 20, 1 << 24]
        @Option(help: "Timed repeats per size (the fastest is reported).") var repeats = 20

        func validate() throws {
            guard sizes.allSatisfy({ $0 > 0 }), repeats > 0 else { throw ValidationError("--sizes and --repeats must be positive") }
        }

        func run() throws {
            let world = try Communicator.world()
            if world.size == 1 {
                FileHandle.standardError.write(Data("note: one process: nothing travels; launch under mpirun with 2 or more ranks\n".utf8))
            }
            if let r = try CommBenchmark.run(world: world, sizes: sizes, repeats: repeats) {
                print(jsonString(r))
                if r.results.contains(where: { !$0.correct }) { throw ExitCode(3) }
            }
        }
    }

    struct Dispatch: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Bytes an MoE layer's expert exchange sends between nodes per token, with and without a routing limit (under mpirun: one ep group over all ranks).",
            discussion: """
                Counts, not times. The ep group spans every rank (the model's experts must split evenly); a \
                node is what MPI_Comm_split_type calls one. Across simulated nodes: launch/cluster.sh 1 -- \
                bench dispatch ... (docs/multinode.md).
                """)
        @Option(help: "Model preset (\(DeepSeekConfig.presetNames.joined(separator: ", "))).") var model = "small"
        @Option(help: "Tokens per rank and step.") var tokens = 2048
        @Option(help: "Steps (forward and backward of one MoE layer).") var steps = 2
        @Option(help: "Routed experts per token (num_experts_per_tok; default: the model's).") var expertsPerToken: Int?
        @Option(help: "Router groups (n_group; default: the model's).") var groups: Int?
        @Option(help: "Groups a token's experts may come from (topk_group, the M of device- or node-limited routing), or none: greedy top-K over all experts.") var topkGroup = "2"
        @Option(help: "What rows travel as: fp32 or bf16 (parallel.comm_dtype).") var commDtype = "fp32"

        func validate() throws {
            guard tokens > 0, tokens <= 1 << 20, steps > 0, steps <= 1000 else { throw ValidationError("--tokens in 1...1048576, --steps in 1...1000") }
            guard CommDType(rawValue: commDtype) != nil else { throw ValidationError("--comm-dtype \(commDtype): expected fp32 or bf16") }
            guard topkGroup == "none" || (Int(topkGroup) ?? 0) > 0 else { throw ValidationError("--topk-group \(topkGroup): a positive count or none") }
        }

        func run() throws {
            var c = try DeepSeekConfig.preset(model)
            if let k = expertsPerToken { c.numExpertsPerTok = k }
            if let g = groups { c.nGroup = g }
            let limit = Int(topkGroup)
            if let limit { c.topkGroup = limit }
            let world = try Communicator.world()
            var problems: [String] = []
            if c.nRoutedExperts % world.size != 0 { problems.append("the \(c.nRoutedExperts) experts do not split over \(world.size) ranks") }
            if c.nGroup <= 0 || c.nRoutedExperts % c.nGroup != 0 { problems.append("--groups \(c.nGroup) does not divide the \(c.nRoutedExperts) experts") }
            if let limit, limit > c.nGroup { problems.append("--topk-group \(limit) exceeds the \(c.nGroup) groups") }
            if c.numExpertsPerTok <= 0 || c.numExpertsPerTok > (limit ?? c.nGroup) * (c.nRoutedExperts / Swift.max(c.nGroup, 1)) {
                problems.append("--experts-per-token \(c.numExpertsPerTok) does not fit the experts the limit allows")
            }
            if !problems.isEmpty {
                if world.rank == 0 { throw ValidationError(problems.joined(separator: "; ")) }
                throw ExitCode.validationFailure
            }
            if world.size == 1 {
                FileHandle.standardError.write(Data("note: one process: nothing travels; launch under mpirun across nodes\n".utf8))
            }
            if let r = try DispatchBenchmark.run(world: world, model: model, config: c, tokens: tokens, steps: steps, limit: limit,
                                                 commDType: CommDType(rawValue: commDtype)!) {
                print(jsonString(r))
            }
        }
    }
}
