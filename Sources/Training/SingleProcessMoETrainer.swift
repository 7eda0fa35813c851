import Foundation
import Autograd
import NN
import Optim
import DeepSeek
import Collectives
import Parallel

/// The DeepSeek-V2 training step on one process without a recipe (benchmarks, tests): the
/// process grid of one rank, one micro-batch, balance losses with the config's expert α.
package final class SingleProcessMoETrainer {
    package let engine: GridTrainer
    package private(set) var step = 0

    package init(model: DeepSeekForCausalLM, adam: AdamW.Config = AdamW.Config(), clip: Float = 1.0,
                grid: ProcessGrid? = nil, commDType: CommDType = .fp32) {
        let g = grid ?? (try! ProcessGrid(layout: Layout(dp: 1, ep: 1, pp: 1, microbatches: 1), world: .solo, layers: model.config.numHiddenLayers))
        engine = GridTrainer(model: model, grid: g, adam: adam, clip: clip,
                                 alphas: .init(expert: model.config.auxLossAlpha, device: 0, communication: 0), dropping: nil, seed: 0,
                             commDType: commDType)
    }

    /// `tokens` holds the global batch: `batch`·(length+1) ids; each rank takes its micro-batches.
    package func step(rows tokens: [Int], batch b: Int, length t: Int, lr: Float) throws -> GridTrainer.StepResult {
        let micro = engine.grid.layout.microbatches, rows = b / micro
        defer { step += 1 }
        return try engine.step(batch: { m in
            GridTrainer.MicroBatch(rows: Array(tokens[(m * rows * (t + 1))..<((m + 1) * rows * (t + 1))]), rows: rows, length: t, firstSequence: m * rows)
        },
                               rows: rows, length: t, lr: lr, step: step)
    }
}
