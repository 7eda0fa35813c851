import Collectives
import Autograd

extension GridTrainer {
    /// One step's state while its schedule runs: what the caller asked for, what the
    /// micro-batches report, the forwards waiting for their backwards, the sends in flight, and
    /// the result so far.
    struct StepContext {
        let rows: Int, length: Int
        /// The global step (it keys the token-dropping RNG).
        let globalStep: Int
        let objective: Objective?
        let extraStats: Int
        /// The rank's micro-batches by global index, and 1/M, one micro-batch's share of the step.
        let micros: [Int]
        let scale: Float
        /// The stage's dense parameters, whose gradients are packed after each backward.
        let densePieces: [Tensor]
        /// MoE layers that may route: decoder layers, then the MTP blocks (layers L, L + 1, ...).
        let routedLayers: Int
        var stats: StepStatistics
        var forwarded: [Int: ForwardedMicroBatch] = [:]
        var sends: [Communicator.Request] = []
        var result = StepResult()

        init(_ trainer: GridTrainer, rows: Int, length: Int, step: Int, objective: Objective?, extraStats: Int) {
            let c = trainer.model.config, total = trainer.grid.layout.microbatches
            self.rows = rows
            self.length = length
            globalStep = step
            self.objective = objective
            self.extraStats = extraStats
            micros = Array(trainer.grid.micros)
            scale = 1 / Float(total)
            densePieces = trainer.dense.pieces.map { trainer.flat.pieces[$0].tensor }
            routedLayers = c.numHiddenLayers + (trainer.model.mtp?.depths.count ?? 0)
            stats = StepStatistics(microbatches: total, layers: routedLayers, experts: c.nRoutedExperts, extra: extraStats)
        }
    }
}
