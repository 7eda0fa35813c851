import Testing
import Autograd
import DeepSeek
import Optim
@testable import Parallel

/// A failed expert exchange does not end the job inside the layer: the executor records it,
/// stops exchanging, and the step throws it — naming the rank and the layer — before it sends
/// or updates anything, so the command reports it and ends the job (`failRank`).
@Suite struct ExpertExchangeFailureTests {
    struct Injected: Error, CustomStringConvertible { var description: String { "MPI_Alltoallv failed (injected)" } }

    func trainer() throws -> GridTrainer {
        let c = DeepSeekConfig.tiny
        let model = DeepSeekForCausalLM(c, seed: 5, positions: 16)
        let grid = try ProcessGrid(layout: Layout(dp: 1, ep: 1, pp: 1, microbatches: 1), world: .solo, layers: c.numHiddenLayers)
        return GridTrainer(model: model, grid: grid, adam: AdamW.Config(), clip: 1,
                               alphas: .init(expert: 0, device: 0, communication: 0), dropping: nil, seed: 0)
    }

    func batch(_ m: Int) -> GridTrainer.MicroBatch {
        GridTrainer.MicroBatch(rows: (0..<(2 * 17)).map { ($0 * 31 + 7) % 256 }, rows: 2, length: 16, firstSequence: 0)
    }

    @Test func aFailureDuringTheStepIsThrownByTheStepWithoutAnUpdate() throws {
        let trainer = try trainer(), executor = try #require(trainer.executor)
        let before = trainer.heldValues()
        // Recorded where nothing can throw (here inside the forward, after the layers): the
        // backward skips the exchanges and the step throws after it.
        let objective: GridTrainer.Objective = { logits, _ in
            executor.record(ExpertExchangeError(rank: 0, layer: 2, pass: .backward, cause: Injected()))
            return (logits.sum() * 0, [])
        }
        #expect {
            _ = try trainer.step(batch: batch, rows: 2, length: 16, lr: 1e-2, step: 0, objective: objective)
        } throws: { error in
            "\(error)" == "rank 0 of the ep group, layer 2 backward: MPI_Alltoallv failed (injected)"
        }
        #expect(trainer.heldValues() == before)
        // The group is out of step for good: every later step fails too, before it exchanges.
        #expect(throws: ExpertExchangeError.self) { _ = try trainer.step(batch: batch, rows: 2, length: 16, lr: 1e-2, step: 1) }
    }

    @Test func aFailedExecutorRunsNoMoreExchanges() {
        let executor = ExpertParallel(comm: .solo, experts: 8, layerOffset: [1: 0], flatCount: 1)
        executor.record(ExpertExchangeError(rank: 0, layer: 1, pass: .forward, cause: Injected()))
        let out = executor.run(Tensor(repeating: 1, shape: [3, 4]), weights: Tensor(repeating: 1, shape: [6]),
                               experts: StackedExperts(experts: 8, hidden: 4, intermediate: 2),
                               assignments: [[(token: 0, slot: 0)]] + Array(repeating: [], count: 7), length: 3, plan: nil,
                               training: nil, layer: 1)
        #expect(out.shape == [3, 4] && out.values.allSatisfy { $0 == 0 })
        #expect(throws: ExpertExchangeError.self) { try executor.throwIfFailed() }
        #expect(executor.load.isEmpty)
    }
}
