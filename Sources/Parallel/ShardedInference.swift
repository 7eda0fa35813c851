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

    /// `rows` sequences of `length` token ids (row-major).
    package struct Batch {
        package var ids: [Int]
        package var rows: Int
        package var length: Int
        package init(ids: [Int], rows: Int, length: Int) {
            self.ids = ids
            self.rows = rows
            self.length = length
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
                h = model.runLayers(h, layers: grid.layers, experts: experts).0
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

    /// `prompt` cut to leave room for `maxNew` tokens in the rotary tables: a longer prompt keeps
    /// its end (the assistant header).
    package func fitted(_ prompt: [Int], maxNew: Int) -> [Int] {
        let room = Swift.max(model.rotary.cos.shape[0] - maxNew, 1)
        return prompt.count > room ? Array(prompt.suffix(room)) : prompt
    }

    /// Completes this position's requests group by group, each group decoded as one batch with a
    /// KV cache of the stage's layers only. A group's requests share their prompt: it is
    /// prefilled once and the cache copied to every row; rows that finish leave the batch.
    /// `groups`: ranges of `requests` with one prompt and one `maxNew` (GRPO: a prompt's
    /// completions within one global micro-batch, which the layout does not decide); nil: each
    /// request alone. Each tick feeds the group's prompt or its rows' last tokens through the
    /// stages; the last stage samples and sends the tokens to the position's other stages, so
    /// every stage returns the completions.
    package func generate(_ requests: [Request], cache kind: CacheKind = .latent, groups: [Range<Int>]? = nil) throws -> [[Int]] {
        var out = [[Int]](repeating: [], count: requests.count)
        let groups = (groups ?? requests.indices.map { $0..<($0 + 1) }).filter { !$0.isEmpty && requests[$0.lowerBound].maxNew > 0 }
        let pp = grid.layout.pp, v = model.config.vocabSize, dim = model.config.hiddenSize
        let last = grid.worldRank(stage: pp - 1)
        var current = 0, step = 0
        var cache: KVCache?
        var alive: [Int] = [], input: [Int] = []
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
                    cache = KVCache(model.config, kind: kind, batch: 1, capacity: first.prompt.count + first.maxNew, layers: grid.layers)
                    input = first.prompt
                    alive = Array(group)
                }
                let rows = step == 0 ? 1 : alive.count, tn = step == 0 ? first.prompt.count : 1
                var h: Tensor
                if grid.isFirstStage {
                    h = model.model.embed_tokens(input, shape: [rows, tn])
                } else {
                    h = Tensor(try grid.world.recv(count: rows * tn * dim, from: grid.worldRank(stage: grid.stage - 1), tag: Self.hiddenTag),
                               shape: [rows, tn, dim])
                }
                h = model.decodeLayers(h, layers: grid.layers, cache: cache!, experts: experts)
                try experts?.throwIfFailed()
                cache!.advance(tn)
                if step == 0 && alive.count > 1 { cache = cache!.rows([Int](repeating: 0, count: alive.count)) }
                // Per alive row: its token, and whether it finished.
                var tokens: [Int] = [], finished: [Bool] = []
                if grid.isLastStage {
                    let logits = model.lm_head(model.model.norm(h)).contiguous()
                    for (j, r) in alive.enumerated() {
                        // After the shared prefill every row samples from its one last position.
                        let at = ((step == 0 ? 0 : j) * tn + tn - 1) * v
                        let token = requests[r].sampler.sample(Array(UnsafeBufferPointer(start: logits.data + at, count: v)), step: step)
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
