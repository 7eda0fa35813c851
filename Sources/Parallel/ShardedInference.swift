import Foundation
import Autograd
import Collectives
import DeepSeek

/// Evaluation and sampling of a model sharded over the grid, with no rank holding another's
/// weights: hidden states travel the pipeline stages as in training, the routed experts run
/// where they live through the ep group's all-to-all, and the last stage owns the head.
///
/// Every rank of the world calls these together (they are collectives). Each data-parallel
/// position brings its own work — the same list on each of its stages — and with ep > 1 a
/// position that runs out first keeps serving its experts to the others
/// (`ExpertParallel.serve`) until the last position is done; with ep = 1 positions do not wait
/// for each other.
///
/// Why the results do not depend on the layout: a batch or a request is computed whole by one
/// position, through the same kernels as in one process (the owner of an expert runs each
/// source's rows as its own segment, as `Tensor.expertFFN` does), so a greedy completion has
/// the same tokens at every layout.
package final class ShardedInference {
    package let grid: ProcessGrid
    package let model: DeepSeekForCausalLM
    /// The ep group's all-to-all; nil with ep = 1 (a rank then holds its stage's experts) and
    /// on a stage without MoE layers.
    let experts: ExpertParallel?
    /// Whether positions wait for each other: with ep > 1 on a model with routed experts. A
    /// fact of the whole layout, not of the rank — a stage without MoE layers has no executor
    /// but must take part in the same "still decoding?" reductions as the others.
    let lockstep: Bool

    package init(grid: ProcessGrid, model: DeepSeekForCausalLM, experts: ExpertParallel?) {
        self.grid = grid
        self.model = model
        self.experts = grid.ep.size > 1 ? experts : nil
        lockstep = grid.layout.ep > 1 && model.config.nRoutedExperts > 0 && grid.world.size > 1
    }

    package convenience init(_ trainer: GridTrainer) {
        self.init(grid: trainer.grid, model: trainer.model, experts: trainer.executor)
    }

    // Tags of the messages between stages (no step is in flight when these run).
    static let hiddenTag = 30_001, tokenTag = 30_002

    /// One round without work of its own: the stage's MoE layers' exchanges, for the others.
    func serve() throws {
        guard let experts else { return }
        for l in grid.layers {
            if let moe = model.model.layers[l].moe { experts.serve(experts: moe.experts, layer: l) }
        }
        try experts.throwIfFailed()
    }

    /// The most of `n` over the world's ranks: how many rounds everyone runs. Without the
    /// experts' all-to-all no position waits for another: each runs its own `n`.
    func rounds(_ n: Int) throws -> Int {
        guard lockstep else { return n }
        var x = [Double(n)]
        try grid.world.allreduceMax(&x)
        return Int(x[0])
    }

    /// `rows` sequences of `length` token ids (row-major); `routes`: a rollout's recorded
    /// experts for them (router replay).
    package struct Batch {
        package var ids: [Int]
        package var rows: Int
        package var length: Int
        package var routes: RouteReplay?
        package init(ids: [Int], rows: Int, length: Int, routes: RouteReplay? = nil) {
            self.ids = ids
            self.rows = rows
            self.length = length
            self.routes = routes
        }
    }

    /// A forward without gradients of this position's batches (ids matter on the first stage;
    /// rows and length everywhere); on the last stage `consume(i, logits [rows, length, V])`
    /// for batch i.
    package func forward(_ batches: [Batch], consume: (Int, Tensor) throws -> Void) throws {
        let n = try rounds(batches.count), dim = model.config.hiddenSize
        var sends: [Communicator.Request] = []
        try withNoGrad {
            for i in 0..<n {
                guard i < batches.count else { try serve(); continue }
                let b = batches[i]
                var h: Tensor
                if grid.isFirstStage {
                    h = model.model.embed_tokens(b.ids, shape: [b.rows, b.length])
                } else {
                    h = Tensor(try grid.world.recv(count: b.rows * b.length * dim, from: grid.worldRank(stage: grid.stage - 1), tag: Self.hiddenTag),
                               shape: [b.rows, b.length, dim])
                }
                h = model.runLayers(h, layers: grid.layers, experts: experts, routes: b.routes).0
                try experts?.throwIfFailed()
                if grid.isLastStage {
                    try consume(i, model.lm_head(model.model.norm(h)))
                } else {
                    sends.append(try send(h))
                }
            }
        }
        for s in sends { try s.wait() }
    }

    func send(_ h: Tensor) throws -> Communicator.Request {
        let c = h.contiguousNoGrad()
        return try grid.world.isend(Array(UnsafeBufferPointer(start: c.data, count: c.count)),
                                    to: grid.worldRank(stage: grid.stage + 1), tag: Self.hiddenTag)
    }

    /// A prompt to complete: up to `maxNew` tokens drawn by `sampler`, ending at any of `stop`
    /// (not included), as `DeepSeekForCausalLM.generate` does.
    package struct Request {
        package var prompt: [Int]
        package var maxNew: Int
        package var sampler: Sampler
        package var stop: Set<Int>
        package init(prompt: [Int], maxNew: Int, sampler: Sampler = Sampler(), stop: Set<Int> = []) {
            self.prompt = prompt
            self.maxNew = maxNew
            self.sampler = sampler
            self.stop = stop
        }
    }

    /// `prompts` in decoding batches of at most `width`, each of one prompt length: the indices
    /// of each length in order, cut into runs of `width` (a function of the prompts alone, so
    /// the layout decides no batch).
    package static func lengthBatches(_ prompts: [[Int]], width: Int) -> [[Int]] {
        var byLength: [Int: [Int]] = [:]
        for (i, p) in prompts.enumerated() { byLength[p.count, default: []].append(i) }
        return byLength.keys.sorted().flatMap { n in
            let same = byLength[n]!
            return stride(from: 0, to: same.count, by: width).map { Array(same[$0..<Swift.min($0 + width, same.count)]) }
        }
    }

    /// `prompt` cut to leave room for `maxNew` tokens in the rotary tables: a longer prompt keeps
    /// its end (the assistant header).
    package func fitted(_ prompt: [Int], maxNew: Int) -> [Int] {
        let room = Swift.max(model.rotary.cos.shape[0] - maxNew, 1)
        return prompt.count > room ? Array(prompt.suffix(room)) : prompt
    }

    /// Completes this position's requests group by group, each group decoded as one batch with a
    /// KV cache of the stage's layers only; rows that finish leave the batch. `groups`: ranges of
    /// `requests` whose prompts have one length and one `maxNew` — a prompt's GRPO completions
    /// within one global micro-batch, whose shared prompt is prefilled once and its cache copied
    /// to every row, or held-out prompts of one length (`lengthBatches`); the layout decides
    /// neither, so the completions do not depend on it. nil: each request alone. Each tick feeds
    /// the group's prompts or its rows' last tokens through the stages; the last stage samples
    /// and sends the tokens to the position's other stages, so every stage returns the
    /// completions.
    ///
    /// `record` keeps what the sampling saw (GRPO's rollout–training agreement and router replay).
    package func generate(_ requests: [Request], cache kind: CacheKind = .latent, groups: [Range<Int>]? = nil,
                          record: RolloutRecord? = nil) throws -> [[Int]] {
        var out = [[Int]](repeating: [], count: requests.count)
        let groups = (groups ?? requests.indices.map { $0..<($0 + 1) }).filter { !$0.isEmpty && requests[$0.lowerBound].maxNew > 0 }
        let pp = grid.layout.pp, v = model.config.vocabSize, dim = model.config.hiddenSize
        let last = grid.worldRank(stage: pp - 1)
        var current = 0, step = 0
        var cache: KVCache?
        var alive: [Int] = [], input: [Int] = [], shared = false
        var sends: [Communicator.Request] = []
        try withNoGrad {
            while true {
                let active = current < groups.count
                if lockstep {
                    // Whether anyone is still decoding: a finished position serves the others' experts.
                    var any = [active ? 1.0 : 0.0]
                    try grid.world.allreduceMax(&any)
                    if any[0] == 0 { break }
                } else if !active {
                    break
                }
                guard active else { try serve(); continue }
                let group = groups[current], first = requests[group.lowerBound]
                if cache == nil {
                    shared = group.allSatisfy { requests[$0].prompt == first.prompt }
                    precondition(group.allSatisfy { requests[$0].prompt.count == first.prompt.count && requests[$0].maxNew == first.maxNew })
                    cache = KVCache(model.config, kind: kind, batch: shared ? 1 : group.count, capacity: first.prompt.count + first.maxNew,
                                    layers: grid.layers)
                    input = shared ? first.prompt : group.flatMap { requests[$0].prompt }
                    alive = Array(group)
                }
                let rows = step == 0 && shared ? 1 : alive.count, tn = step == 0 ? first.prompt.count : 1
                var h: Tensor
                if grid.isFirstStage {
                    h = model.model.embed_tokens(input, shape: [rows, tn])
                } else {
                    h = Tensor(try grid.world.recv(count: rows * tn * dim, from: grid.worldRank(stage: grid.stage - 1), tag: Self.hiddenTag),
                               shape: [rows, tn, dim])
                }
                let fed = alive, sharedPrefill = step == 0 && shared
                h = model.decodeLayers(h, layers: grid.layers, cache: cache!, experts: experts, record: record.map { record in { l, chosen in
                    // A shared prefill's one row stands for every row of the group.
                    let per = chosen.count / (sharedPrefill ? 1 : fed.count)
                    for (j, r) in fed.enumerated() {
                        let from = sharedPrefill ? 0 : j * per
                        record.experts[r][l, default: []] += chosen[from..<(from + per)]
                    }
                } })
                try experts?.throwIfFailed()
                cache!.advance(tn)
                if step == 0 && shared && alive.count > 1 { cache = cache!.rows([Int](repeating: 0, count: alive.count)) }
                // Per alive row: its token, and whether it finished.
                var tokens: [Int] = [], finished: [Bool] = []
                if grid.isLastStage {
                    let logits = model.lm_head(model.model.norm(h)).contiguous()
                    for (j, r) in alive.enumerated() {
                        // After a shared prefill every row samples from its one last position.
                        let at = ((step == 0 && shared ? 0 : j) * tn + tn - 1) * v
                        let row = Array(UnsafeBufferPointer(start: logits.data + at, count: v))
                        let token = requests[r].sampler.sample(row, step: step)
                        record?.logps[r].append(RolloutRecord.logProbability(row, token, temperature: requests[r].sampler.temperature))
                        tokens.append(token)
                        finished.append(requests[r].stop.contains(token) || step + 1 == requests[r].maxNew)
                    }
                    let message: [Float] = zip(tokens, finished).flatMap { [Float($0), $1 ? 1 : 0] }
                    for s in 0..<(pp - 1) { sends.append(try grid.world.isend(message, to: grid.worldRank(stage: s), tag: Self.tokenTag)) }
                } else {
                    sends.append(try send(h))
                    let m = try grid.world.recv(count: 2 * alive.count, from: last, tag: Self.tokenTag)
                    for j in alive.indices {
                        tokens.append(Int(m[2 * j]))
                        finished.append(m[2 * j + 1] != 0)
                    }
                }
                for (j, r) in alive.enumerated() where !requests[r].stop.contains(tokens[j]) { out[r].append(tokens[j]) }
                let staying = alive.indices.filter { !finished[$0] }
                if staying.isEmpty {
                    current += 1
                    step = 0
                    cache = nil
                } else {
                    if staying.count < alive.count { cache = cache!.rows(staying) }
                    alive = staying.map { alive[$0] }
                    input = staying.map { tokens[$0] }
                    step += 1
                }
                if sends.count > 64 {
                    for s in sends { try s.wait() }
                    sends = []
                }
            }
        }
        for s in sends { try s.wait() }
        return out
    }
}

/// What a rollout's sampling pass saw, per request: on the last stage, log p of each sampled
/// token (stop tokens included) under the full distribution at the sampler's temperature (no
/// top-p cut: what a training forward's log-probability is compared with); on every stage, per
/// MoE layer it holds, the experts chosen at each position it fed, [positions·K].
package final class RolloutRecord {
    package var logps: [[Float]]
    package var experts: [[Int: [Int]]]

    package init(requests n: Int) {
        logps = [[Float]](repeating: [], count: n)
        experts = [[Int: [Int]]](repeating: [:], count: n)
    }

    /// log softmax(logits / T)[token] (T ≤ 0, greedy: T = 1).
    package static func logProbability(_ logits: [Float], _ token: Int, temperature: Float) -> Float {
        let t = Double(temperature > 0 ? temperature : 1), m = Double(logits.max() ?? 0)
        let z = logits.reduce(0.0) { $0 + Foundation.exp((Double($1) - m) / t) }
        return Float((Double(logits[token]) - m) / t - Foundation.log(z))
    }
}
