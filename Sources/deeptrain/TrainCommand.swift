import ArgumentParser
import Foundation
import Autograd
import DeepSeek
import Checkpoint
import Training

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Run a recipe's stages in order.",
        discussion: "Exit codes: 0 done (or stopped by SIGINT/SIGTERM after a checkpoint), 1 bad input, 2 usage, 3 runtime failure.")

    @Argument(help: "The recipe (YAML).") var recipe: String
    @Option(name: .customLong("set"), help: "Override a recipe key: --set stages.0.steps=100 (repeatable).") var overrides: [String] = []
    @Option(help: "auto (the run directory's latest checkpoint, if any) or a checkpoint path.") var resume: String?
    @Option(help: "Run directory (default runs/<recipe name>).") var runDir: String?
    @Flag(help: "Check the recipe and print the model's plan; train nothing.") var dryRun = false

    func run() throws {
        let r: Recipe
        let config: DeepSeekV2Config
        do {
            r = try Recipe.load(recipe, overrides: overrides)
            config = try r.model.config(relativeTo: (recipe as NSString).deletingLastPathComponent)
            guard dryRun || (r.parallel.dp == 1 && r.parallel.ep == 1 && r.parallel.pp == 1) else {
                fail("\(recipe): parallel: dp/ep/pp other than 1 need the MPI layers (not available yet); set them to 1 or use --dry-run")
            }
        } catch let e as RecipeError { fail(e.description) } catch let e as ConfigError { fail(e.description) }
        if dryRun {
            let p = ModelPlan(config, sequenceLength: r.stages.map(\.seqLen).max() ?? 1, dp: r.parallel.dp, ep: r.parallel.ep,
                              pp: r.parallel.pp, microBatch: Swift.max(1, r.stages[0].batchSize / Swift.max(r.parallel.dp * r.parallel.microbatches, 1)),
                              microbatches: r.parallel.microbatches)
            func count(_ n: Int) -> String {
                n >= 1_000_000_000 ? String(format: "%.2fB", Double(n) / 1e9) : n >= 1_000_000 ? String(format: "%.1fM", Double(n) / 1e6)
                    : String(format: "%.1fK", Double(n) / 1e3)
            }
            print("recipe \(r.name): \(r.stages.count) stage(s), model \(r.model.source), "
                  + "\(count(p.total_parameters)) parameters (\(count(p.activated_parameters)) activated)")
            print("  layout: dp \(r.parallel.dp) × pp \(r.parallel.pp) = \(r.parallel.dp * r.parallel.pp) ranks, ep \(r.parallel.ep); "
                  + String(format: "%.1f GiB per rank for weights, gradients and AdamW (ZeRO-1)", p.memory_per_rank.total_bytes / 1_073_741_824))
            for s in r.stages {
                print("  \(s.name): \(s.kind) on \(s.data), \(s.steps) steps × \(s.batchSize) × \(s.seqLen) tokens, lr \(s.lr) (\(s.schedule))")
            }
            return
        }
        Threads.set(r.threads ?? 2)
        let dir = runDir ?? "runs/\(r.name)"
        var resumePath: String? = nil
        if let resume {
            if resume == "auto" {
                let latest = (dir as NSString).appendingPathComponent((r.checkpoint.dir as NSString).appendingPathComponent("latest"))
                if let name = try? String(contentsOfFile: latest, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) {
                    resumePath = ((latest as NSString).deletingLastPathComponent as NSString).appendingPathComponent(name)
                }
            } else {
                resumePath = resume
            }
        }
        // Check everything that can be checked before the run directory is created, so bad
        // input leaves nothing behind.
        do {
            for (i, s) in r.stages.enumerated() {
                do { _ = try DataSource.open(s.data, vocab: config.vocabSize) } catch let e as RecipeError {
                    throw RecipeError(file: recipe, line: nil, column: nil, path: "stages[\(i)].data", message: e.message)
                }
            }
            if let resumePath {
                let stored = try CheckpointStore.readConfig(resumePath)
                guard stored == config else {
                    throw CheckpointError(resumePath, "holds a different model than the recipe's (its config.json differs); resume with the recipe that wrote it")
                }
            }
        } catch let e as RecipeError { fail(e.description) } catch let e as CheckpointError { fail(e.description) }
        do {
            let trainer = try reportingBadInput { try Trainer(recipe: r, recipePath: recipe, runDir: dir, fresh: resumePath == nil) { line in
                if line.hasPrefix("\u{1B}") { print(line, terminator: ""); fflush(nil) } else { print(line); fflush(nil) }
            } }
            let outcome = try reportingBadInput { try trainer.train(resume: resumePath) }
            if isatty(1) != 0 { print("") }
            if outcome == .finished {
                let rule = String(repeating: "─", count: 86)
                print("\(rule)\n\(trainer.summaryTable())\n\(rule)")
            } else {
                print("stopped: resume with --resume auto")
            }
        } catch let e as Trainer.Failure {
            FileHandle.standardError.write(Data("error: \(e.description)\n".utf8))
            Foundation.exit(e.exitCode)
        }
    }
}
