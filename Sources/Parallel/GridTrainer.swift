import Foundation
import Autograd
import NN
import Optim
import DeepSeek
import Collectives

/// One optimizer step of DeepSeek-V2 on a process grid: the rank's micro-batches through its
/// pipeline stage in the 1F1B order (experts exchanged with its ep group), per-micro-batch
/// gradients summed in the canonical tree, reduce-scattered over the data-parallel group
/// (ZeRO-1: each rank keeps AdamW moments for its shard only), a gradient norm built from
/// per-chunk sums in global order, AdamW on the shard, and the updated shards all-gathered.
/// A single process is the grid of one rank and runs the same code.
///
/// `step` is the schedule; each phase is a method: `forwardMicroBatch` and
/// `backwardMicroBatch` in 1F1B order, `reduceGradients` (the `GradientReducer`'s buckets),
/// `reduceStatistics`, `gradientNorm`, `clipAndUpdate` and `updateRouterBiases`.
package final class GridTrainer {
    package let grid: ProcessGrid
    package let model: DeepSeekForCausalLM
    package let flat: FlatLayout
    package let dense: FlatVector
    package let experts: FlatVector
    package let denseOptimizer: AdamWShard
    package let expertOptimizer: AdamWShard
    package let executor: ExpertParallel?
    package let clip: Float
    package var alphas: BalanceLosses.Alphas
    package var dropping: TokenDropping?
    package let seed: UInt64
    /// Aux-loss-free balancing's γ (`moe.bias_update_speed`): the V3 router biases move by ±γ
    /// after each step. 0: they stay.
    package var biasUpdateSpeed: Float = 0
    /// MTP depths trained (`mtp.depth`, at most the model's) and λ, the weight of their mean
    /// cross-entropy in the loss (`mtp.weight`). 0 depths: MTP is not run.
    package var mtpDepth = 0
    package var mtpWeight: Float = 0
    /// The step's gradients, from the micro-batches' backwards to the rank's shards.
    private var reducer: GradientReducer
    /// Set by a caller whose next use of the parameters is the next `step` or
    /// `settleParameters()`: where a group spans nodes, a step's parameter allgather then runs
    /// on into the next step's forward, which waits for each layer's parameters as it reaches
    /// them (`ParameterGather`).
    package var overlapGather = false
    private var inFlight: (dense: ParameterGather?, experts: ParameterGather?) = (nil, nil)
    private lazy var gatherPoints = GatherPoints(flat: flat, dense: dense, experts: experts)
    private var gatherWaited = 0.0
    private var gatherFailure: Error?

    package struct StepResult: Sendable {
        package var loss: Double { ce + balance + mtpWeight * mtp }
        package var ce = 0.0
        /// The MTP depths' mean cross-entropy (mean over micro-batches) and its weight λ.
        package var mtp = 0.0
        package var mtpWeight = 0.0
        /// Per MoE layer (decoder layers, then MTP blocks): max / mean of the step's expert
        /// loads over all ranks (`RouterBias.imbalance`).
        package var loadImbalance: [Double] = []
        package var balance = 0.0
        /// The three balance losses summed over MoE layers: expert, device, communication.
        package var aux: (expert: Double, device: Double, communication: Double) = (0, 0, 0)
        package var gradNorm: Float = 0
        package var dropped = 0
        package var assigned = 0
        package var dropFraction: Double { assigned == 0 ? 0 : Double(dropped) / Double(assigned) }
        /// Per MoE layer, the share of the first micro-batch's assignments each expert got.
        package var expertLoad: [[Double]] = []
        /// Per MoE layer, per ep rank: the most rows one micro-batch sent that rank's experts.
        package var rankLoad: [[Int]] = []
        /// A rank's capacity per micro-batch (its groups' capacities), nil without dropping.
        package var rankCapacity: Int?
        package var protectedRouted = 0, protectedReceived = 0
        package var updated = false
        package var forward = 0.0, backward = 0.0, optimizer = 0.0
        /// Seconds of the optimizer phase spent waiting for the gradient reduce-scatter after
        /// the backward and for the parameter allgather: communication left exposed.
        package var reduceWait = 0.0, gatherWait = 0.0
        /// The objective's `stats`, summed over all micro-batches of the step.
        package var extra: [Double] = []
    }

    /// One micro-batch: rows·length input ids, rows·length targets (−100: no loss there), and
    /// its first sequence's global index (never-dropped sequences are drawn by it).
    package struct MicroBatch {
        package var inputs: [Int]
        package var targets: [Int]
        package var firstSequence: Int
        /// Rows holding several sequences: each token's position and sequence id.
        package var packing: (positions: [Int], segments: [Int])?
        /// This micro-batch's share of the step's trained tokens: its loss counts with that
        /// weight, so the step's loss is the mean over all its trained tokens (SFT rows carry
        /// different numbers of them). nil: every micro-batch counts alike.
        package var weight: Double?
        /// The experts a rollout's sampling chose for these rows (GRPO's router replay).
        package var routes: RouteReplay?
        package init(inputs: [Int], targets: [Int], firstSequence: Int, packing: (positions: [Int], segments: [Int])? = nil,
                    weight: Double? = nil, routes: RouteReplay? = nil) {
            self.inputs = inputs
            self.targets = targets
            self.firstSequence = firstSequence
            self.packing = packing
            self.weight = weight
            self.routes = routes
        }
        /// A pretraining batch: rows of length+1 tokens, each predicting its next token.
        package init(rows tokens: [Int], rows b: Int, length t: Int, firstSequence: Int) {
            let (inputs, targets) = Self.nextToken(tokens, rows: b, length: t)
            self.init(inputs: inputs, targets: targets, firstSequence: firstSequence)
        }

        /// Rows of length+1 tokens → the first `length` of each as inputs, the last `length`
        /// as their next-token targets.
        package static func nextToken(_ tokens: [Int], rows b: Int, length t: Int) -> (inputs: [Int], targets: [Int]) {
            precondition(tokens.count == b * (t + 1), "\(tokens.count) tokens for \(b) rows of \(t + 1)")
            var ids = [Int](), targets = [Int]()
            ids.reserveCapacity(b * t)
            targets.reserveCapacity(b * t)
            for r in 0..<b {
                let row = tokens[(r * (t + 1))..<((r + 1) * (t + 1))]
                ids.append(contentsOf: row.dropLast())
                targets.append(contentsOf: row.dropFirst())
            }
            return (ids, targets)
        }
    }

    /// A stage's own objective on the last pipeline stage: (logits [rows, length, vocab], global
    /// micro-batch) → its loss, already weighted as its share of the step's objective, and
    /// `extraStats` numbers to sum over the step's micro-batches (GRPO's KL, clip counts...).
    package typealias Objective = (_ logits: Tensor, _ micro: Int) -> (loss: Tensor, stats: [Double])

    package init(model: DeepSeekForCausalLM, grid: ProcessGrid, adam: AdamW.Config, clip: Float,
                alphas: BalanceLosses.Alphas, dropping: TokenDropping?, seed: UInt64, commDType: CommDType = .fp32) {
        self.model = model
        self.grid = grid
        let c = model.config
        flat = FlatLayout(model.namedParameters(), partition: grid.partition, layout: grid.layout, experts: c.nRoutedExperts)
        // Buckets reduce during the backward, so ownership is interleaved for them (`FlatLayout.split`).
        let denseBuckets = GradientReducer.bucketed(nodes: grid.dpNodes), expertBuckets = GradientReducer.bucketed(nodes: grid.edpNodes)
        dense = FlatVector(layout: flat, pieces: flat.densePieces(stage: grid.stage), parts: grid.dp.size, part: grid.dp.rank,
                           interleaved: denseBuckets && grid.dp.size > 1)
        experts = FlatVector(layout: flat, pieces: flat.expertPieces(stage: grid.stage, block: grid.epRank),
                             parts: grid.edp.size, part: grid.edp.rank, interleaved: expertBuckets && grid.edp.size > 1)
        denseOptimizer = AdamWShard(count: dense.shardCount(grid.dp.rank), config: adam)
        expertOptimizer = AdamWShard(count: experts.shardCount(grid.edp.rank), config: adam)
        var offsets: [Int: Int] = [:]
        for (i, off) in zip(experts.pieces, experts.offsets) {
            let l = flat.pieces[i].expert!.layer
            if offsets[l] == nil { offsets[l] = off }
        }
        // The executor keeps the experts' gradients (ExpertParallel): their stacked buffers go.
        for layer in model.model.layers + (model.mtp?.depths ?? []) { layer.moe?.experts.releaseGradients() }
        executor = offsets.isEmpty ? nil : ExpertParallel(comm: grid.ep, experts: c.nRoutedExperts, layerOffset: offsets, flatCount: experts.count,
                                                             dtype: commDType, nodes: grid.epNodeOf)
        reducer = GradientReducer(dense: dense, over: grid.dp, experts: experts, over: grid.edp,
                                  bucketed: denseBuckets, expertsBucketed: expertBuckets,
                                  dtype: commDType)
        self.clip = clip
        self.alphas = alphas
        self.dropping = dropping
        self.seed = seed
    }

    package var optimizerStep: Int { denseOptimizer.step }

    /// One step over `layout.microbatches` micro-batches of `rows` sequences of `length`
    /// tokens; `batch(m)` gives global micro-batch m. The loss is the mean over micro-batches of
    /// cross-entropy (over targets ≠ −100) plus the balance losses, or `objective` plus the
    /// balance losses. `step` keys the token-dropping RNG.
    package func step(batch: (Int) -> MicroBatch, rows b: Int, length t: Int, lr: Float, step globalStep: Int,
                     objective: Objective? = nil, extraStats: Int = 0) throws -> StepResult {
        var step = StepContext(self, rows: b, length: t, step: globalStep, objective: objective, extraStats: extraStats)
        gatherWaited = 0
        executor?.resetStep(leaves: grid.layout.ep * grid.micros.count,
                            cacheBytes: ExpertParallel.cacheBudget(parameterFloats: dense.count + experts.count))
        reducer.beginStep()
        for piece in step.densePieces { piece.zeroGrad() }
        for op in PipelineSchedule.oneFOneB(stage: grid.stage, stages: grid.layout.pp, micros: step.micros.count) {
            switch op {
            case .forward(let j): try forwardMicroBatch(j, batch: batch, &step)
            case .backward(let j): try backwardMicroBatch(j, &step)
            }
        }
        for send in step.sends { try send.wait() }
        try reduceGradients(&step)
        let updateStart = now()
        let loads = try reduceStatistics(&step)
        let norm = try gradientNorm()
        summarize(&step, loads: loads, norm: norm)
        if norm.isFinite && !step.stats.micros.contains(where: \.nonFinite) {
            step.result.gatherWait = try clipAndUpdate(norm: norm, lr: lr)
            step.result.updated = true
            updateRouterBiases(counts: step.stats.counts)
        }
        reducer.releaseSoloShards()
        step.result.optimizer += now() - updateStart
        step.result.gatherWait += gatherWaited
        return step.result
    }

    /// Global micro-batch `micros[j]` through the stage: its input (embedded on the first stage,
    /// received from the previous one elsewhere), the stage's layers, then the loss on the last
    /// stage or the output sent to the next; kept for its backward.
    func forwardMicroBatch(_ j: Int, batch: (Int) -> MicroBatch, _ step: inout StepContext) throws {
        let started = now(), m = step.micros[j]
        let micro = batch(m)
        executor?.micro = m
        var training = MoETraining(alphas: alphas, dropping: dropping, seed: seed, step: step.globalStep,
                                   sequenceOffset: micro.firstSequence)
        training.executor = executor
        awaitParameters(layer: nil)
        let (hidden, input) = try stageInput(micro, j, rows: step.rows, length: step.length)
        var (out, reports) = model.runLayers(hidden, layers: grid.layers, training: training, packing: micro.packing,
                                             routes: micro.routes, before: { self.awaitParameters(layer: $0) })
        try settleParameters()
        var normed: Tensor? = nil, mtpLoss: Tensor? = nil
        if grid.isLastStage {
            let final = model.model.norm(out)
            normed = final
            if mtpDepth > 0, step.objective == nil,
               let mtp = model.mtpLoss(normed: final, ids: micro.inputs, targets: micro.targets, batch: step.rows, length: step.length,
                                       training: training, depth: mtpDepth) {
                mtpLoss = mtp.loss
                reports += mtp.moe
            }
        }
        try executor?.throwIfFailed()
        let balance = balanceLoss(reports, micro: m, &step.stats)
        let start: ForwardedMicroBatch.Start
        if let normed {
            start = .loss(lastStageLoss(model.lm_head(normed), micro, m, balance: balance, mtp: mtpLoss, &step))
        } else {
            step.sends.append(try send(out, toStage: grid.stage + 1, tag: 2 * j))
            start = .output(out, balance: balance * step.scale)
        }
        step.forwarded[j] = ForwardedMicroBatch(start: start, input: input)
        step.result.forward += now() - started
    }

    /// The stage's input for the j-th micro-batch, and on a later stage the leaf whose gradient
    /// goes back to the previous one.
    func stageInput(_ micro: MicroBatch, _ j: Int, rows: Int, length: Int) throws -> (hidden: Tensor, leaf: Tensor?) {
        if grid.isFirstStage { return (model.model.embed_tokens(micro.inputs, shape: [rows, length]), nil) }
        let received = try grid.world.recv(count: rows * length * model.config.hiddenSize,
                                           from: grid.worldRank(stage: grid.stage - 1), tag: 2 * j)
        let leaf = Tensor(received, shape: [rows, length, model.config.hiddenSize])
        leaf.requiresGrad = true
        return (leaf, leaf)
    }

    /// The stage's MoE layers' balance losses summed, their reports recorded for micro-batch m.
    func balanceLoss(_ reports: [(Int, MoELayerReport)], micro m: Int, _ stats: inout StepStatistics) -> Tensor {
        var balance = Tensor(scalar: 0)
        for (layer, report) in reports {
            for (i, n) in report.expertCounts.enumerated() { stats.counts[layer][i] += Double(n) }
            if let l = report.losses {
                balance = balance + l.expert + l.device + l.communication
                stats.micros[m].balance[layer] = (Double(l.expert.item), Double(l.device.item), Double(l.communication.item))
            }
            if let d = report.drop {
                stats.micros[m].dropped += d.dropped
                stats.micros[m].assigned += d.kept.count
            }
            if m == 0 { stats.firstLoad[layer] = report.expertLoad }
        }
        if !balance.item.isFinite { stats.micros[m].nonFinite = true }
        return balance
    }

    /// The last stage's loss for micro-batch m as its share of the step: the objective's, or
    /// cross-entropy weighted by its token share (or 1/M), with the balance and MTP losses.
    func lastStageLoss(_ logits: Tensor, _ micro: MicroBatch, _ m: Int, balance: Tensor, mtp mtpLoss: Tensor?,
                       _ step: inout StepContext) -> Tensor {
        let scale = step.scale
        var loss: Tensor
        if let objective = step.objective {
            let (value, extra) = objective(logits, m)
            precondition(extra.count == step.extraStats)
            step.stats.micros[m].extra = extra
            step.stats.micros[m].loss = Double(value.item)
            loss = value + balance * scale
        } else {
            let ce = logits.reshape([step.rows * step.length, model.config.vocabSize]).crossEntropy(targets: micro.targets)
            // The micro-batch's share of the step: its token weight, or 1/M.
            let share = micro.weight.map { Float($0) } ?? scale
            if let w = micro.weight {
                // Logged as w·M·ce so the step's mean over micro-batches is Σ w·ce.
                step.stats.micros[m].loss = Double(ce.item) * w / Double(scale)
                loss = ce * Float(w) + balance * scale
            } else {
                step.stats.micros[m].loss = Double(ce.item)
                loss = (ce + balance) * scale
            }
            if let mtpLoss {
                // V3's L = L_main + λ · mean over depths of the MTP cross-entropy.
                step.stats.micros[m].mtp = Double(mtpLoss.item) * Double(share / scale)
                loss = loss + mtpLoss * (mtpWeight * share)
            }
        }
        if !loss.item.isFinite { step.stats.micros[m].nonFinite = true }
        return loss
    }

    /// The j-th micro-batch's backward: from its loss, or from the output gradient the next
    /// stage sends; its input's gradient goes back to the previous stage and its dense
    /// gradient, one bucket, to the reducer.
    func backwardMicroBatch(_ j: Int, _ step: inout StepContext) throws {
        let started = now()
        guard let forwarded = step.forwarded.removeValue(forKey: j) else { preconditionFailure("backward of micro-batch \(j) before its forward") }
        executor?.micro = step.micros[j]
        let last = j == step.micros.count - 1
        let observer = last ? reducer.lastBackward(flat: flat, vector: dense) : nil
        if last, let executor, executor.leaves == 1, let experts = reducer.expertBuckets(source: { executor.direct }) {
            executor.layerGradientsReady = { experts.ready($0) }
        }
        defer { if last { executor?.layerGradientsReady = nil } }
        switch forwarded.start {
        case .loss(let loss):
            loss.backward(observer: observer)
        case .output(let out, let balance):
            let g = try grid.world.recv(count: out.count, from: grid.worldRank(stage: grid.stage + 1), tag: 2 * j + 1)
            // d/d(out) of Σ out·g is g exactly; the stage's balance losses join the same backward.
            let surrogate = (out * Tensor(g, shape: out.shape)).sum() + balance
            surrogate.backward(observer: observer)
        }
        try executor?.throwIfFailed()
        if let input = forwarded.input {
            step.sends.append(try send(input.grad ?? Tensor(zeros: input.shape), toStage: grid.stage - 1, tag: 2 * j + 1))
        }
        if let observer { observer.backwardFinished() } else { reducer.add(denseBucket: dense.packGradients(flat)) }
        for piece in step.densePieces { piece.zeroGrad() }
        step.result.backward += now() - started
    }

    /// Starts sending `x` to the rank of this position on `stage`.
    func send(_ x: Tensor, toStage stage: Int, tag: Int) throws -> Communicator.Request {
        let values = x.contiguousNoGrad()
        return try grid.world.isend(Array(UnsafeBufferPointer(start: values.data, count: values.count)),
                                    to: grid.worldRank(stage: stage), tag: tag)
    }

    /// The experts' weight gradients, summed over the group's micro-batches (`ExpertParallel`;
    /// backward time), join the dense buckets; then all of them reduce to the rank's shards.
    func reduceGradients(_ step: inout StepContext) throws {
        try settleParameters()  // the optimizer is about to write the shards the sends read
        let expertStart = now()
        reducer.add(expertGradients: executor?.weightGradients() ?? [Float](repeating: 0, count: experts.count))
        step.result.backward += now() - expertStart
        let reduceStart = now()
        try reducer.reduce()
        step.result.reduceWait = now() - reduceStart
        step.result.optimizer += step.result.reduceWait
    }

    /// Sums the step's statistics over the world (one contributor per entry, so MPI's sum is
    /// exact) and returns the load maxima: per (layer, ep rank) the most rows one micro-batch
    /// sent the rank, then per layer the capacity (−1: none).
    func reduceStatistics(_ step: inout StepContext) throws -> [Double] {
        if let executor {
            step.stats.protectedRouted = executor.protectedRouted
            step.stats.protectedReceived = executor.protectedReceived
        }
        try step.stats.sum(over: grid.world)
        let ep = grid.layout.ep, routed = step.routedLayers
        var loadMax = [Double](repeating: 0, count: routed * ep + routed)
        if let executor {
            for (layer, l) in executor.load {
                loadMax[layer * ep + grid.epRank] = Double(l.rows)
                loadMax[routed * ep + layer] = Double(l.capacity ?? -1)
            }
        }
        try grid.world.allreduceMax(&loadMax)
        return loadMax
    }

    /// The norm of the reduced gradient, from per-chunk sums of squares in global chunk order.
    func gradientNorm() throws -> Float {
        var sums = [Double](repeating: 0, count: flat.chunks.count)
        sums.withUnsafeMutableBufferPointer { sp in
            let out = sp.baseAddress!
            for (vec, g) in [(dense, reducer.denseShard), (experts, reducer.expertShard)] {
                var starts: [Int] = [], at = 0
                for id in vec.ownedChunks { starts.append(at); at += flat.chunks[id].count }
                g.withUnsafeBufferPointer { gp in
                    let base = gp.baseAddress!, ids = vec.ownedChunks
                    // Each chunk's sum is computed whole by one thread: the bits do not depend on threads.
                    parallelFor(ids.count, grain: 16) { r in
                        for i in r { out[ids[i]] = blockSumOfSquares(base + starts[i], flat.chunks[ids[i]].count) }
                    }
                }
            }
        }
        try grid.world.allreduceSum(&sums)
        return Float(sums.reduce(0, +).squareRoot())
    }

    /// The step's result from its summed statistics and load maxima.
    func summarize(_ step: inout StepContext, loads loadMax: [Double], norm: Float) {
        let c = model.config, total = Double(grid.layout.microbatches), stats = step.stats
        let layers = c.numHiddenLayers, routed = step.routedLayers, ep = grid.layout.ep, extraStats = step.extraStats
        var r = step.result
        r.gradNorm = norm
        r.extra = [Double](repeating: 0, count: extraStats)
        r.mtpWeight = Double(mtpWeight)
        for mb in stats.micros {
            r.mtp += mb.mtp / total
            for i in 0..<extraStats { r.extra[i] += mb.extra[i] }
            // With an objective, `ce` is its value (already a share of the step's total).
            r.ce += step.objective == nil ? mb.loss / total : mb.loss
            r.dropped += mb.dropped
            r.assigned += mb.assigned
            var bal = 0.0
            for b in mb.balance {
                r.aux.expert += b.expert / total
                r.aux.device += b.device / total
                r.aux.communication += b.communication / total
                bal += b.expert + b.device + b.communication
            }
            r.balance += bal / total
        }
        for l in 0..<routed where c.isMoELayer(l) && (l < layers || stats.counts[l].contains { $0 > 0 }) {
            r.expertLoad.append(stats.firstLoad[l])
            r.rankLoad.append((0..<ep).map { Int(loadMax[l * ep + $0]) })
            if loadMax[routed * ep + l] >= 0 && dropping != nil { r.rankCapacity = Int(loadMax[routed * ep + l]) }
        }
        r.protectedRouted = stats.protectedRouted
        r.protectedReceived = stats.protectedReceived
        // Layers that routed tokens this step (an MTP block the stage does not train routes none).
        for l in 0..<routed where c.isMoELayer(l) && stats.counts[l].contains(where: { $0 > 0 }) {
            r.loadImbalance.append(RouterBias.imbalance(stats.counts[l]))
        }
        step.result = r
    }

    /// Clipping (a scale inside AdamW's loop) and AdamW on the rank's shards, dense over dp and
    /// experts over edp, each then all-gathered.
    /// Returns the seconds spent in the allgathers; those of a group that spans nodes are left
    /// in flight when `overlapGather` says the next step's forward may wait for them.
    func clipAndUpdate(norm: Float, lr: Float) throws -> Double {
        let scale: Float = clip > 0 && norm > clip ? clip / (norm + 1e-6) : 1
        let d = try update(dense, optimizer: denseOptimizer, grad: reducer.denseShard, scale: scale, group: grid.dp, lr: lr,
                           leaveInFlight: overlapGather && reducer.bucketed)
        let e = try update(experts, optimizer: expertOptimizer, grad: reducer.expertShard, scale: scale, group: grid.edp, lr: lr,
                           leaveInFlight: overlapGather && reducer.expertsBucketed)
        inFlight = (d.inFlight, e.inFlight)
        return d.seconds + e.seconds
    }

    /// Until the parameters up to decoder layer `layer` (nil: the embedding) have arrived; the
    /// wait counts as exposed communication. A failure is kept for `settleParameters`.
    func awaitParameters(layer: Int?) {
        guard inFlight.dense != nil || inFlight.experts != nil, gatherFailure == nil else { return }
        let start = now()
        do {
            if let layer {
                if let end = gatherPoints.dense[layer] { try inFlight.dense?.wait(through: end) }
                if let end = gatherPoints.experts[layer] { try inFlight.experts?.wait(through: end) }
            } else {
                try inFlight.dense?.wait(through: gatherPoints.embedding)
            }
        } catch {
            gatherFailure = error
        }
        gatherWaited += now() - start
    }

    /// Until every parameter has arrived and the rank's shards have left: call before anything
    /// other than the next step reads the parameters after a step with `overlapGather`.
    package func settleParameters() throws {
        guard inFlight.dense != nil || inFlight.experts != nil else { return }
        let start = now()
        defer { gatherWaited += now() - start }
        let pending = inFlight
        inFlight = (nil, nil)
        try pending.dense?.finish()
        try pending.experts?.finish()
        if let failure = gatherFailure {
            gatherFailure = nil
            throw failure
        }
    }

    /// Aux-loss-free balancing: every rank moves every layer's router bias by ±γ (stages
    /// included: the counts are world sums).
    func updateRouterBiases(counts: [[Double]]) {
        guard biasUpdateSpeed > 0 else { return }
        for (layer, _, bias) in model.routerBiases {
            RouterBias.update(bias, counts: counts[layer], speed: biasUpdateSpeed)
        }
    }

    /// AdamW on this rank's shard, in place in the parameter tensors; then the other ranks'
    /// shards arrive by allgather (its seconds returned).
    func update(_ v: FlatVector, optimizer: AdamWShard, grad: [Float], scale: Float, group: Communicator, lr: Float,
                leaveInFlight: Bool) throws -> (seconds: Double, inFlight: ParameterGather?) {
        let k = optimizer.begin(lr: lr)
        grad.withUnsafeBufferPointer { g in
            let runs = v.shardSegments(group.rank, flat).map { seg in
                let piece = flat.pieces[seg.piece]
                return AdamWShard.Run(offset: seg.inShard, count: seg.count, weights: piece.tensor.data + seg.inPiece,
                                      grad: g.baseAddress! + seg.inShard, decays: piece.decays)
            }
            optimizer.apply(k, runs: runs, scale: scale)
        }
        if leaveInFlight { return (0, try ParameterGather(v, flat, group: group)) }
        let gatherStart = now()
        try v.allgatherValues(flat, group: group)
        return (now() - gatherStart, nil)
    }
}

extension GridTrainer {
    /// A run of consecutive elements of one parameter this rank owns (consecutive owned chunks
    /// merged): the piece, its element range, and where those elements sit in the rank's
    /// optimizer shard (`expert`: the expert shard, else the dense one).
    package struct OwnedRun: Sendable {
        package let piece: Int
        package let range: Range<Int>
        package let expert: Bool
        package let shardOffset: Int
    }

    /// This rank's owned runs, dense shard then expert shard, in chunk order: what it writes to
    /// a checkpoint and reads back on resume.
    package func ownedRuns() -> [OwnedRun] {
        var runs: [OwnedRun] = []
        for (vec, isExpert) in [(dense, false), (experts, true)] {
            var at = 0
            for id in vec.ownedChunks {
                let ch = flat.chunks[id]
                if let last = runs.last, last.expert == isExpert, last.piece == ch.piece, last.range.upperBound == ch.start {
                    runs[runs.count - 1] = OwnedRun(piece: ch.piece, range: last.range.lowerBound..<(ch.start + ch.count),
                                                    expert: isExpert, shardOffset: last.shardOffset)
                } else {
                    runs.append(OwnedRun(piece: ch.piece, range: ch.start..<(ch.start + ch.count), expert: isExpert, shardOffset: at))
                }
                at += ch.count
            }
        }
        return runs
    }

    /// Resident bytes of the parameters this rank does not hold (those mapped lazily, all but
    /// the smallest; mincore): zero unless something materialised another rank's weights.
    package func foreignResidentBytes() -> Int {
        let held = Set(dense.pieces + experts.pieces)
        return flat.pieces.indices.reduce(0) { sum, i in
            let t = flat.pieces[i].tensor
            return held.contains(i) || !t.storage.isMapped ? sum : sum + Storage.residentBytes(t.data, count: t.count)
        }
    }

    /// The values of every parameter this rank holds — its stage's dense weights, then its ep
    /// block's experts — packed: a frozen copy of the rank's part (GRPO's reference model).
    package func heldValues() -> [Float] { dense.packValues(flat) + experts.packValues(flat) }

    /// Exchanges the held parameters' values with `values` (packed as `heldValues`): run a
    /// forward with other weights of the same part, then swap back.
    package func swapHeld(_ values: inout [Float]) {
        precondition(values.count == dense.count + experts.count, "\(values.count) values for \(dense.count + experts.count) held")
        values.withUnsafeMutableBufferPointer { b in
            var at = 0
            for vec in [dense, experts] {
                for i in vec.pieces {
                    let t = flat.pieces[i].tensor, p = t.data, q = b.baseAddress! + at
                    for k in 0..<t.count { let x = p[k]; p[k] = q[k]; q[k] = x }
                    at += t.count
                }
            }
        }
    }
}
