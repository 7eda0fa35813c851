import ArgumentParser
import Foundation
import FileSafety
import Data
import Autograd
import DeepSeek
import Checkpoint
import Collectives
import Parallel
import Training

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Run a recipe's stages in order (under mpirun: on every rank, with the recipe's parallel layout).",
        discussion: """
            Launch on several ranks with launch/local.sh NPROCS RECIPE (this machine) or mpirun; see docs/parallelism.md.
            Exit codes: 0 done (or stopped by SIGINT/SIGTERM after a checkpoint), 1 bad input, 3 runtime failure (a rank failed or was lost), 64 usage (an unknown option or a missing argument).
            """)

    @Argument(help: "The recipe (YAML).") var recipe: String
    @Option(name: .customLong("set"), help: "Override a recipe key: --set stages.0.steps=100 (repeatable).") var overrides: [String] = []
    @Option(help: "auto (the run directory's latest checkpoint, if any) or a checkpoint path.") var resume: String?
    @Option(help: "Run directory (default runs/<recipe name>).") var runDir: String?
    @Flag(help: "Check the recipe and print the model's plan; train nothing.") var dryRun = false

    func run() throws {
        let r = try Recipe.load(recipe, overrides: overrides)
        let config = try r.model.config(relativeTo: (recipe as NSString).deletingLastPathComponent)
        let worldSize = dryRun ? r.parallel.layout(world: r.parallel.pp).world
            : Communicator.launchedByMPI ? Int(ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] ?? "1") ?? 1 : 1
        let layout = r.parallel.layout(world: worldSize)
        // An impossible layout stops every rank before any work, with what would fit.
        for (i, s) in r.stages.enumerated() {
            let problems = layout.problems(world: worldSize, config: config, batch: s.batchSize)
            if !problems.isEmpty {
                throw fail("\(recipe): parallel layout \(layout) cannot run on \(worldSize) rank\(worldSize == 1 ? "" : "s")"
                           + (r.stages.count > 1 ? " (stage \(i) \(s.name))" : "") + ":\n  " + problems.joined(separator: "\n  "))
            }
        }
        if dryRun { return printPlan(r, config: config, layout: layout) }
        // Each rank's share of the cores unless the recipe fixes it (speed only: the bits do not
        // depend on the thread count).
        Threads.set(r.threads ?? Communicator.defaultThreads)
        MatmulPrecision.set(r.precision)
        let world: Communicator, grid: ProcessGrid
        do {
            world = try Communicator.world(timeout: r.parallel.timeout)
            grid = try ProcessGrid(layout: layout, world: world, layers: config.numHiddenLayers, placement: r.parallel.epPlacement)
        } catch let e as LayoutError {
            throw e
        } catch {
            throw CommandFailure.rank(.solo, "cannot set up MPI: \(error)", code: 3)
        }
        let dir = runDir ?? "runs/\(r.name)"
        let resumePath = resume == "auto"
            ? RunDirectory.latestCheckpoint(checkpoints: (dir as NSString).appendingPathComponent(r.checkpoint.dir)) : resume
        try checkInputs(r, config: config, resumePath: resumePath)
        do {
            let trainer = try RecipeTrainer(recipe: r, recipePath: recipe, runDir: dir, fresh: resumePath == nil, grid: grid) { line in
                if line.hasPrefix("\u{1B}") { print(line, terminator: ""); fflush(nil) } else { print(line); fflush(nil) }
            }
            let outcome = try trainer.train(resume: resumePath)
            if isatty(1) != 0 && world.rank == 0 { print("") }
            if world.rank != 0 {
            } else if outcome == .finished {
                let rule = String(repeating: "─", count: 86)
                print("\(rule)\n\(trainer.summaryTable())\n\(rule)")
            } else {
                print("stopped: resume with --resume auto")
            }
        } catch let e as RecipeTrainer.Failure {
            throw CommandFailure.rank(world, e.description, code: e.exitCode)
        } catch let e as InputError {
            throw e
        } catch {
            throw CommandFailure.rank(world, "\(error)", code: 3)
        }
    }

    /// Checks everything that can be checked before the run directory is created, so bad input
    /// leaves nothing behind: every stage's data, and a checkpoint to resume.
    func checkInputs(_ r: Recipe, config: DeepSeekConfig, resumePath: String?) throws {
        for i in r.stages.indices {
            do { try RecipeTrainer.checkData(recipe: r, recipePath: recipe, stage: i, vocab: config.vocabSize) } catch let e as RecipeError {
                // Errors that name their own key keep it; a data file's problem is the stage's `data`.
                throw RecipeError(file: recipe, line: nil, column: nil, path: e.path.hasPrefix("stages[") ? e.path : "stages[\(i)].data",
                                  message: e.message)
            }
        }
        if let resumePath {
            let stored = try CheckpointStore.readConfig(resumePath)
            guard stored == config else {
                throw CheckpointError(resumePath, "holds a different model than the recipe's (its config.json differs); resume with the recipe that wrote it")
            }
        }
    }

    /// `--dry-run`: the recipe's model, layout, peak memory per rank and stages.
    func printPlan(_ r: Recipe, config: DeepSeekConfig, layout: Layout) {
        let p = ModelPlan(config, sequenceLength: r.stages.map(\.seqLen).max() ?? 1, dp: layout.dp, ep: layout.ep,
                          pp: layout.pp, microBatch: Swift.max(1, r.stages[0].batchSize / Swift.max(layout.microbatches, 1)),
                          microbatches: layout.microbatches)
        let first = r.stages[0]
        let memory = MemoryPlan(config, layout: layout, rows: Swift.max(1, first.batchSize / Swift.max(layout.microbatches, 1)),
                                length: first.seqLen)
        func count(_ n: Int) -> String {
            n >= 1_000_000_000 ? String(format: "%.2fB", Double(n) / 1e9) : n >= 1_000_000 ? String(format: "%.1fM", Double(n) / 1e6)
                : String(format: "%.1fK", Double(n) / 1e3)
        }
        print("recipe \(r.name): \(r.stages.count) stage(s), model \(r.model.source), "
              + "\(count(p.totalParameters)) parameters (\(count(p.activatedParameters)) activated)")
        print("  layout: dp \(layout.dp) × pp \(layout.pp) = \(layout.world) ranks, ep \(layout.ep); "
              + String(format: "peak memory %.2f GiB per rank (deeptrain plan --recipe for its parts)", memory.peakBytes / 1_073_741_824))
        for s in r.stages {
            print("  \(s.name): \(s.kind.name.rawValue) on \(s.data), \(s.steps) steps × \(s.batchSize) × \(s.seqLen) tokens, lr \(s.lr) (\(s.schedule.rawValue))")
        }
    }
}
