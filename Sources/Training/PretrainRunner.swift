import Foundation
import Parallel

/// A pretraining stage: next-token prediction on rows of a token stream. Step s's rows are
/// global sequences from (global step × batch_size), so resuming, and continuing after an
/// earlier stage, keep reading the stream where it was.
final class PretrainRunner: StageRunner {
    let context: StageContext
    let stage: Recipe.Stage
    let data: DataSource

    init(_ context: StageContext, stage: Recipe.Stage, data: DataSource) {
        self.context = context
        self.stage = stage
        self.data = data
    }

    func opening(from step: Int) -> String {
        "stage \(context.index) \(stage.name): \(stage.kind.name.rawValue) on \(stage.data), \(stage.steps) steps of "
            + "\(stage.batchSize)×\(stage.seqLen) tokens, from step \(step)"
    }

    func step(_ step: Int, globalStep: Int, lr: Float) throws -> (result: GridTrainer.StepResult, metrics: PretrainMetrics, tokens: Int) {
        let rows = stage.batchSize / context.trainer.recipe.parallel.microbatches, first = globalStep * stage.batchSize
        let (data, length, seed) = (data, stage.seqLen, context.seed)
        let r = try context.engine.step(batch: { m in
            let f = first + m * rows
            return GridTrainer.MicroBatch(rows: data.rows(first: f, count: rows, length: length + 1, seed: seed),
                                              rows: rows, length: length, firstSequence: f)
        }, rows: rows, length: length, lr: lr, step: globalStep)
        return (r, PretrainMetrics(), stage.batchSize * stage.seqLen)
    }

    var readsParametersOnlyInSteps: Bool { true }

    func evaluate() throws -> Evaluation {
        try context.trainer.evaluate(context.inference, data: data, stage: stage)
    }

    func progressLine(_ common: StepMetrics, _ metrics: PretrainMetrics, steps: Int, eta: Double) -> String {
        lossLine(common, steps: steps, eta: eta)
    }
}
