import Foundation
import Autograd
import Parallel

/// An SFT stage: the loss on the assistant tokens of conversations, one per row (cut to
/// seq_len) or packed several to a row. Conversation g of the stage's stream is sequence g of
/// its steps, so every layout and every restart trains on the same rows.
final class SFTRunner: StageRunner {
    let context: StageContext
    let stage: Recipe.Stage
    let data: PostTrainingData
    let packer: PostTrainingData.Packer?

    init(_ context: StageContext, stage: Recipe.Stage, data: PostTrainingData, packer: PostTrainingData.Packer?) {
        self.context = context
        self.stage = stage
        self.data = data
        self.packer = packer
    }

    func opening(from step: Int) -> String {
        "stage \(context.index) \(stage.name): \(stage.kind.name.rawValue) on \(stage.data), \(stage.steps) steps of "
            + "\(stage.batchSize)×\(stage.seqLen) tokens, from step \(step)"
    }

    /// Trained tokens of the step's conversations, counted on every rank, when each
    /// micro-batch's loss counts by its share of them: with a chat template the step's loss is
    /// the mean over all its trained tokens (TRL's). nil: micro-batches count alike.
    func trainedTokens(first: Int) -> Int? {
        guard data.format.isTemplate && packer == nil else { return nil }
        var n = 0
        for g in first..<(first + stage.batchSize) {
            n += PostTrainingData.sftRow(data.renderedConversation(g, seed: context.seed), length: stage.seqLen,
                                         pad: data.format.pad).targets.filter { $0 != ignoreIndex }.count
        }
        return n
    }

    /// Micro-batch `m` of the step whose first conversation is `first`; counts the rows it cut.
    func microBatch(_ m: Int, first: Int, globalStep: Int, stepTrained: Int?, cut: inout Int) -> GridTrainer.MicroBatch {
        let rows = stage.batchSize / context.trainer.recipe.parallel.microbatches
        var inputs: [Int] = [], targets: [Int] = [], positions: [Int] = [], segments: [Int] = []
        for row in 0..<rows {
            let g = first + m * rows + row
            if let packer {
                let x = packer.row(g)
                inputs += x.inputs
                targets += x.targets
                positions += x.positions
                segments += x.segments
                continue
            }
            let x = PostTrainingData.sftRow(data.renderedConversation(g, seed: context.seed), length: stage.seqLen, pad: data.format.pad)
            inputs += x.inputs
            targets += x.targets
            if x.cut { cut += 1 }
        }
        let trainedHere = targets.filter { $0 != ignoreIndex }.count
        return GridTrainer.MicroBatch(inputs: inputs, targets: targets, firstSequence: globalStep * stage.batchSize + m * rows,
                                          packing: packer == nil ? nil : (positions, segments),
                                          weight: stepTrained.map { Double(trainedHere) / Double(Swift.max($0, 1)) })
    }

    func step(_ step: Int, globalStep: Int, lr: Float) throws -> (result: GridTrainer.StepResult, metrics: SFTMetrics, tokens: Int) {
        let first = step * stage.batchSize, stepTrained = trainedTokens(first: first)
        let rows = stage.batchSize / context.trainer.recipe.parallel.microbatches
        nonisolated(unsafe) var cut = 0
        let r = try context.engine.step(batch: { m in
            self.microBatch(m, first: first, globalStep: globalStep, stepTrained: stepTrained, cut: &cut)
        }, rows: rows, length: stage.seqLen, lr: lr, step: globalStep)
        var metrics = SFTMetrics(truncatedConversationsLocal: cut)
        if let n = data.count, packer == nil { metrics.epoch = Double(step * stage.batchSize) / Double(n) }
        if let packer { metrics.conversations = packer.range((step + 1) * stage.batchSize - 1).upperBound }
        return (r, metrics, stage.batchSize * stage.seqLen)
    }

    var readsParametersOnlyInSteps: Bool { true }

    func evaluate() throws -> Evaluation {
        try context.trainer.evaluateChat(context.inference, data: data, stage: stage, rewards: context.rewards)
    }

    func progressLine(_ common: StepMetrics, _ metrics: SFTMetrics, steps: Int, eta: Double) -> String {
        lossLine(common, steps: steps, eta: eta)
    }
}
