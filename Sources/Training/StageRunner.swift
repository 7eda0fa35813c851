import Foundation
import DeepSeek
import Parallel

/// One stage kind's part of a stage: what each step trains on, what it adds to the metrics,
/// how the stage is evaluated and how a step is logged. `RecipeTrainer.runStage` drives every kind
/// through the same loop, so the learning-rate schedule, non-finite steps, evaluation steps,
/// metrics lines, checkpoints and stopping behave alike for all of them.
protocol StageRunner: AnyObject {
    associatedtype Metrics: Codable
    /// The stage as it runs (an SFT stage's `epochs` turned into `steps`; no evaluation when
    /// there is no held-out data).
    var stage: Recipe.Stage { get }
    /// The log line that opens the stage at step `from`.
    func opening(from step: Int) -> String
    /// Optimizer step `step` of the stage (global step `globalStep`): its micro-batches through
    /// `GridTrainer.step`, the kind's metrics and the tokens it trained on.
    func step(_ step: Int, globalStep: Int, lr: Float) throws -> (result: GridTrainer.StepResult, metrics: Metrics, tokens: Int)
    /// Held-out evaluation on the sharded model (every rank calls it).
    func evaluate() throws -> Evaluation
    /// The progress line after a step.
    func progressLine(_ common: StepMetrics, _ metrics: Metrics, steps: Int, eta: Double) -> String
    /// True when nothing between two steps reads the parameters but the loop's evaluations
    /// and checkpoints (a GRPO step samples from the model first): the parameter allgather may
    /// then run on into the next step's forward (`GridTrainer.overlapGather`).
    var readsParametersOnlyInSteps: Bool { get }
}

extension StageRunner {
    var readsParametersOnlyInSteps: Bool { false }
}

/// What a stage's runner works with.
struct StageContext {
    unowned let trainer: RecipeTrainer
    /// The stage's engine: the sharded model, its optimizer and the step.
    let engine: GridTrainer
    let index: Int
    /// Evaluation runs on the sharded model, every rank taking part (Evaluation.swift).
    let inference: ShardedInference
    /// The stage's reward functions and weights (exact + format for evaluating SFT).
    let rewards: [(RewardFunction, Double)]

    var seed: UInt64 { trainer.recipe.seed }
}

extension StageRunner {
    /// The progress line of pretraining and SFT steps: the loss and its parts.
    func lossLine(_ m: StepMetrics, steps: Int, eta: Double) -> String {
        String(format: "step %5d/%d  loss %.4f  ce %.4f", m.step, steps, m.loss, m.ce)
            + (m.mtpLoss.map { String(format: "  mtp %.4f", $0) } ?? "")
            + String(format: "  aux %.2e  grad_norm %.3f  lr %.2e  %.0f tok/s  eta %.0fs", m.auxExpert + m.auxDevice + m.auxComm,
                     m.gradNorm, m.lr, m.tokensPerS, eta)
    }
}
