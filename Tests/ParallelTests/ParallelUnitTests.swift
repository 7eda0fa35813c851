import Testing
import Autograd
@testable import Collectives
import DeepSeek
import Optim
@testable import Parallel

/// The pieces of the parallel layers that need no MPI: layout checks, the stage split, the 1F1B
/// schedule, chunk ownership, and the expert-parallel op against the one-process fused op.
@Suite struct ParallelUnitTests {
    func vectors(_ n: Int, _ len: Int) -> [[Float]] {
        let rng = Philox(seed: 5, purpose: "canonical-sum")
        return (0..<n).map { i in (0..<len).map { j in rng.normal(UInt64(i * len + j)) * Float(1 + i * 37 % 11) } }
    }

    func bits(_ x: [Float]) -> [UInt32] { x.map(\.bitPattern) }

    @Test func impossibleLayoutsSayWhatWouldFit() {
        let tiny = DeepSeekConfig.tiny
        #expect(Layout(dp: 2, ep: 2, pp: 2, microbatches: 4).problems(world: 4, config: tiny, batch: 32).isEmpty)
        let worldMismatch = Layout(dp: 2, ep: 1, pp: 1, microbatches: 4).problems(world: 4, config: tiny, batch: 32)
        #expect(worldMismatch.count == 1 && worldMismatch[0].contains("4 ranks ≠ pp × dp = 1 × 2") && worldMismatch[0].contains("parallel.dp: 4"))
        let epNotDividing = Layout(dp: 4, ep: 3, pp: 1, microbatches: 4).problems(world: 4, config: tiny, batch: 32)
        #expect(epNotDividing.contains { $0.contains("ep = 3 does not divide dp = 4") })
        #expect(epNotDividing.contains { $0.contains("8 routed experts") })
        let tooManyStages = Layout(dp: 1, ep: 1, pp: 4, microbatches: 4).problems(world: 4, config: tiny, batch: 32)
        #expect(tooManyStages.contains { $0.contains("pp = 4 stages for 3 layers") })
        let micro = Layout(dp: 4, ep: 1, pp: 1, microbatches: 2).problems(world: 4, config: tiny, batch: 32)
        #expect(micro.contains { $0.contains("microbatches = 2 is not divisible by dp = 4") })
        let batch = Layout(dp: 1, ep: 1, pp: 1, microbatches: 3).problems(world: 1, config: tiny, batch: 32)
        #expect(batch.contains { $0.contains("batch_size = 32 is not divisible by parallel.microbatches = 3") })
        var greedy = tiny
        greedy.nGroup = 1
        greedy.topkMethod = .greedy
        #expect(Layout(dp: 2, ep: 2, pp: 1, microbatches: 2).problems(world: 2, config: greedy, batch: 32)
            .contains { $0.contains("n_group = 1") })
    }

    @Test func stagesSplitLayersAndOwnTheirParameters() {
        let p = StagePartition(layers: 3, stages: 2)
        #expect(p.layers == [0..<2, 2..<3])
        #expect(p.stage(of: "model.embed_tokens.weight") == 0)
        #expect(p.stage(of: "model.layers.1.mlp.experts.3.up_proj.weight") == 0)
        #expect(p.stage(of: "model.layers.2.self_attn.o_proj.weight") == 1)
        #expect(p.stage(of: "lm_head.weight") == 1 && p.stage(of: "model.norm.weight") == 1)
        #expect(StagePartition(layers: 60, stages: 8).layers.map(\.count) == [8, 8, 8, 8, 7, 7, 7, 7])
    }

    @Test func oneFOneBRunsEveryMicroBatchOnceInOrderWithBoundedMemory() {
        for p in 1...4 {
            for s in 0..<p {
                for n in 1...7 {
                    let ops = PipelineSchedule.oneFOneB(stage: s, stages: p, micros: n)
                    var forwards: [Int] = [], backwards: [Int] = [], inFlight = 0, most = 0
                    for op in ops {
                        switch op {
                        case .forward(let j): forwards.append(j); inFlight += 1
                        case .backward(let j):
                            #expect(forwards.contains(j))
                            backwards.append(j)
                            inFlight -= 1
                        }
                        most = max(most, inFlight)
                    }
                    #expect(forwards == Array(0..<n) && backwards == Array(0..<n))
                    #expect(most <= min(p - s, n))
                    #expect(most == PipelineSchedule.mostInFlight(stage: s, stages: p, micros: n))  // what plan counts
                }
            }
        }
        #expect(PipelineSchedule.oneFOneB(stage: 0, stages: 2, micros: 3).map(\.description) == ["F0", "F1", "B0", "F2", "B1", "B2"])
    }

    @Test func everyChunkHasExactlyOneOwnerInEveryLayout() {
        let model = DeepSeekForCausalLM(.tiny, seed: 1)
        for (dp, ep, pp) in [(1, 1, 1), (2, 1, 1), (4, 1, 1), (2, 2, 1), (4, 4, 1), (1, 1, 2), (2, 2, 2), (4, 2, 2)] {
            let layout = Layout(dp: dp, ep: ep, pp: pp, microbatches: 4)
            let flat = FlatLayout(model.namedParameters(), partition: StagePartition(layers: 3, stages: pp), layout: layout, experts: 8)
            var owners = [Int](repeating: 0, count: flat.chunks.count)
            for w in 0..<layout.world {
                let o = flat.owned(worldRank: w)
                for id in o.dense + o.expert { owners[id] += 1 }
            }
            #expect(owners.allSatisfy { $0 == 1 }, "layout \(layout)")
        }
    }

    /// Interleaved shards (groups across nodes): every element has one owner, each rank owns
    /// about as much (within a block), and each owns pieces of the first and of the last
    /// quarter of the vector, so every rank's gradients come in all backward long.
    @Test func interleavedShardsCoverTheVectorOnceAndSpreadOverIt() {
        let model = DeepSeekForCausalLM(.small, seed: 1)
        let layout = Layout(dp: 4, ep: 1, pp: 1, microbatches: 4)
        let flat = FlatLayout(model.namedParameters(), partition: StagePartition(layers: DeepSeekConfig.small.numHiddenLayers, stages: 1),
                              layout: layout, experts: DeepSeekConfig.small.nRoutedExperts)
        for parts in [2, 3, 4] {
            let vectors = (0..<parts).map { FlatVector(layout: flat, pieces: flat.densePieces(stage: 0), parts: parts, part: $0, interleaved: true) }
            let v = vectors[0], block = FlatLayout.interleaveBlock(total: v.count, parts: parts)
            var covered = [UInt8](repeating: 0, count: v.count)
            for q in 0..<parts { for r in v.shards[q] { for i in r { covered[i] += 1 } } }
            #expect(covered.allSatisfy { $0 == 1 }, "\(parts) parts")
            let counts: [Int] = (0..<parts).map { v.shardCount($0) }
            #expect(counts.max()! - counts.min()! <= block + FlatLayout.chunk, "\(parts) parts: \(counts)")
            for q in 0..<parts {
                #expect(v.shards[q].first!.lowerBound < v.count / 4 && v.shards[q].last!.upperBound > 3 * v.count / 4, "rank \(q) of \(parts)")
                // Each rank's view agrees, and its owned chunks are its shard's elements.
                #expect(vectors[q].shards == v.shards)
                let owned: Int = vectors[q].ownedChunks.reduce(0) { $0 + flat.chunks[$1].count }
                #expect(owned == counts[q])
                let segs = v.shardSegments(q, flat)
                let total: Int = segs.map(\.count).reduce(0, +)
                let end: Int = segs.last.map { $0.inShard + $0.count } ?? 0
                #expect(total == counts[q] && end == counts[q])
            }
        }
    }

    /// The expert-parallel op on a one-rank group must be the fused op, bit for bit: output,
    /// input and gate-weight gradients, and the expert gradients it keeps per micro-batch.
    @Test func expertParallelOnOneRankIsTheFusedOp() {
        let c = DeepSeekConfig.tiny
        let model = DeepSeekForCausalLM(c, seed: 3)
        let moe = model.model.layers[1].moe!
        let x = Tensor(vectors(1, 2 * 16 * c.hiddenSize)[0], shape: [2, 16, c.hiddenSize], requiresGrad: true)
        let named = model.namedParameters()
        let experts = named.filter { $0.0.hasPrefix("model.layers.1.mlp.experts.") }
        let ep = ExpertParallel(comm: .solo, experts: c.nRoutedExperts, layerOffset: [1: 0], flatCount: experts.reduce(0) { $0 + $1.1.count })
        ep.micro = 5
        var runs: [(out: [Float], dx: [Float], dGate: [Float])] = []
        for executor in [nil, ep] as [ExpertParallel?] {
            for (_, p) in named { p.zeroGrad() }
            x.grad = nil
            var training = MoETraining(alphas: .init(expert: 0.003, device: 0.05, communication: 0.02),
                                       dropping: TokenDropping(capacityFactor: 1.0), seed: 9, step: 2)
            training.layer = 1
            training.executor = executor
            let (y, _) = moe(x, training: training)
            (y * y).sum().backward()
            runs.append((Array(UnsafeBufferPointer(start: y.data, count: y.count)), Array(UnsafeBufferPointer(start: x.grad!.data, count: x.count)),
                         Array(UnsafeBufferPointer(start: moe.gate.weight.grad!.data, count: moe.gate.weight.count))))
            if executor == nil {
                // The fused op's expert gradients, in the flat order the executor keeps.
                var fused: [Float] = []
                for (_, t) in experts { fused += Array(UnsafeBufferPointer(start: t.grad!.data, count: t.count)) }
                runs.append((fused, [], []))
            }
        }
        #expect(bits(runs[0].out) == bits(runs[2].out))
        #expect(bits(runs[0].dx) == bits(runs[2].dx))
        #expect(bits(runs[0].dGate) == bits(runs[2].dGate))
        #expect(bits(runs[1].out) == bits(ep.weightGradients()))
        #expect(runs[1].out.contains { $0 != 0 })
    }

    /// Over several micro-batches the executor keeps rows, not gradients, and sums the experts'
    /// weight gradients at the end one expert at a time: the same bits as the fused op's
    /// per-micro-batch gradients added in the canonical tree.
    @Test func deferredExpertGradientsAreTheCanonicalSumOfTheFusedOnes() {
        let c = DeepSeekConfig.tiny
        let model = DeepSeekForCausalLM(c, seed: 4)
        let moe = model.model.layers[1].moe!
        let named = model.namedParameters()
        let experts = named.filter { $0.0.hasPrefix("model.layers.1.mlp.experts.") }
        let micros = 5
        let xs = vectors(micros, 2 * 16 * c.hiddenSize)
        let ep = ExpertParallel(comm: .solo, experts: c.nRoutedExperts, layerOffset: [1: 0], flatCount: experts.reduce(0) { $0 + $1.1.count })
        ep.resetStep(leaves: micros)
        var fused = CanonicalSum()
        for executor in [nil, ep] as [ExpertParallel?] {
            for m in 0..<micros {
                for (_, p) in named { p.zeroGrad() }
                let x = Tensor(xs[m], shape: [2, 16, c.hiddenSize], requiresGrad: true)
                var training = MoETraining(alphas: .init(expert: 0.003, device: 0.05, communication: 0.02), dropping: nil, seed: 9, step: 2)
                training.layer = 1
                training.executor = executor
                ep.micro = m
                let (y, _) = moe(x, training: training)
                (y * y).sum().backward()
                if executor == nil {
                    var g: [Float] = []
                    for (_, t) in experts { g += Array(UnsafeBufferPointer(start: t.grad!.data, count: t.count)) }
                    fused.push(g)
                }
            }
        }
        let want = fused.result()!
        #expect(want.contains { $0 != 0 })
        #expect(bits(ep.weightGradients()) == bits(want))
    }

    /// A rank keeps its stage's parameters and, of the routed experts, its ep block's; a model
    /// built for it initialises only those, and every chunk of the layout lies in what its
    /// owner keeps (so checkpoints and updates never read another rank's part).
    @Test func aRankHoldsItsStageAndItsExpertsOnly() {
        let c = DeepSeekConfig.tiny
        let partition = StagePartition(layers: 3, stages: 2)
        let holds = ProcessGrid.holds(partition: partition, stage: 1, block: 1, ep: 2, experts: c.nRoutedExperts)
        #expect(holds("model.layers.2.mlp.experts.7.up_proj.weight") && !holds("model.layers.2.mlp.experts.3.up_proj.weight"))
        #expect(holds("lm_head.weight") && holds("model.layers.2.mlp.gate.weight") && !holds("model.embed_tokens.weight"))
        let model = DeepSeekForCausalLM(c, seed: 1, holds: holds)
        for (name, t) in model.namedParameters() where t.rank >= 2 {
            #expect(t.values.contains { $0 != 0 } == holds(name), "\(name)")
        }
        for (dp, ep, pp) in [(1, 1, 1), (4, 4, 1), (2, 1, 2), (2, 2, 2)] {
            let layout = Layout(dp: dp, ep: ep, pp: pp, microbatches: 4)
            let part = StagePartition(layers: 3, stages: pp)
            let flat = FlatLayout(model.namedParameters(), partition: part, layout: layout, experts: c.nRoutedExperts)
            for w in 0..<layout.world {
                let h = ProcessGrid.holds(partition: part, stage: w / dp, block: (w % dp) % ep, ep: ep, experts: c.nRoutedExperts)
                let o = flat.owned(worldRank: w)
                #expect((o.dense + o.expert).allSatisfy { h(flat.pieces[flat.chunks[$0].piece].name) }, "layout \(layout) rank \(w)")
            }
        }
    }
}

/// `MemoryPlan`'s activation term against the buffers a real step makes: the tiny model (its
/// buffers all of pooled size at 1024 tokens) through GridTrainer on one process, two
/// micro-batches (so the experts keep their rows), the peak of live tensor bytes during the
/// second step over those live before it.
@Suite(.serialized) struct MemoryPlanTests {
    @Test func theActivationEstimateMatchesTheBuffersOfAStep() throws {
        let c = DeepSeekConfig.tiny
        let rows = 16, t = 64, micros = 2
        let model = DeepSeekForCausalLM(c, seed: 3, positions: t)
        let layout = Layout(dp: 1, ep: 1, pp: 1, microbatches: micros)
        let grid = try ProcessGrid(layout: layout, world: .solo, layers: c.numHiddenLayers)
        let trainer = GridTrainer(model: model, grid: grid, adam: AdamW.Config(), clip: 1,
                                      alphas: .init(expert: c.auxLossAlpha, device: 0, communication: 0), dropping: nil, seed: 0)
        let tokens = (0..<(rows * micros * (t + 1))).map { ($0 * 7919) % c.vocabSize }
        func step(_ i: Int) throws {
            _ = try trainer.step(batch: { m in
                GridTrainer.MicroBatch(rows: Array(tokens[(m * rows * (t + 1))..<((m + 1) * rows * (t + 1))]), rows: rows, length: t,
                                           firstSequence: m * rows)
            }, rows: rows, length: t, lr: 1e-3, step: i)
        }
        try step(0)
        let before = TensorMemory.liveBytes
        TensorMemory.resetPeak()
        try step(1)
        let measured = Double(TensorMemory.peakBytes - before)
        let plan = MemoryPlan(c, layout: layout, rows: rows, length: t).ranks[0]
        #expect(measured > 0)
        #expect(abs(plan.activationsBytes / measured - 1) <= 0.2,
                "plan: \(plan.activationsBytes / 1_048_576) MiB of activations, measured \(measured / 1_048_576) MiB")
    }
}
