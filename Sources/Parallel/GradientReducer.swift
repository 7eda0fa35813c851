import Foundation
import Autograd
import Collectives

/// A step's gradients on their way to the rank's shards. Each micro-batch's backward hands its
/// dense gradient over as one bucket, summed in the canonical tree (docs/design.md §6.3); after
/// the last backward the experts' weight gradients join, and `reduce` reduce-scatters the dense
/// sum over dp and the experts' over edp, in that order.
///
/// The rank's last micro-batch does not hand its gradient over whole: its backward reports
/// each parameter as it completes to a `BucketedReduceScatter`, which sends the finished
/// buckets while the backward still computes; `reduce` then waits and adds what arrived.
struct GradientReducer {
    let dense: (group: Communicator, shards: [[Range<Int>]], count: Int)
    let experts: (group: Communicator, shards: [[Range<Int>]], count: Int)
    /// What the gradients travel as; with `bf16` every node of the tree is rounded (`CommDType`).
    let dtype: CommDType
    private var denseTree: CanonicalSum
    private var expertGradients: [Float]?
    /// The rank's reduced shards (dense, experts), kept from step to step: see
    /// `reduceScatterCanonical(_:shards:into:)`.
    private(set) var denseShard: [Float] = [], expertShard: [Float] = []

    /// Whether the dense and the expert reduce-scatters go bucket by bucket during the backward.
    let bucketed: Bool, expertsBucketed: Bool

    init(dense: FlatVector, over denseGroup: Communicator, experts: FlatVector, over expertGroup: Communicator,
         bucketed: Bool = false, expertsBucketed: Bool = false, dtype: CommDType = .fp32) {
        self.dtype = dtype
        denseTree = CanonicalSum(dtype: dtype)
        self.dense = (denseGroup, dense.shards, dense.count)
        self.experts = (expertGroup, experts.shards, experts.count)
        self.bucketed = bucketed && denseGroup.size > 1
        self.expertsBucketed = expertsBucketed && expertGroup.size > 1
    }

    /// Buckets pay where a group spans nodes; within one node the shared-memory reduce-scatter
    /// after the backward is faster than buckets progressed between autograd nodes (2–5% of the
    /// step, docs/multinode.md). DEEPTRAIN_BUCKETS=always takes them on one node too (tests).
    static func bucketed(nodes: Int) -> Bool {
        nodes > 1 || ProcessInfo.processInfo.environment["DEEPTRAIN_BUCKETS"] == "always"
    }

    /// The last micro-batch's dense gradient, reduce-scattered bucket by bucket as its
    /// backward completes them (`lastBackward`).
    private var buckets: BucketedReduceScatter?

    /// Forgets what a step that did not finish added.
    mutating func beginStep() {
        denseTree = CanonicalSum(dtype: dtype)
        expertGradients = nil
        buckets = nil
        expertReduction = nil
    }

    /// For the rank's last micro-batch of the step: an observer for its backward that starts
    /// the dense reduce-scatter as the gradients complete, in place of `add(denseBucket:)`.
    /// Nil unless `bucketed` (the gradient is then packed after the backward).
    mutating func lastBackward(flat: FlatLayout, vector: FlatVector) -> BucketedReduceScatter? {
        guard bucketed else { return nil }
        let b = BucketedReduceScatter(dense: vector, flat: flat, group: dense.group, earlier: denseTree, dtype: dtype)
        denseTree = CanonicalSum(dtype: dtype)
        buckets = b
        return b
    }

    /// The experts' weight gradients, reduce-scattered bucket by bucket as the backward writes
    /// them (`ready`, from `ExpertParallel`'s direct gradients) into `source()`; nil unless
    /// `expertsBucketed`. `add(expertGradients:)` then starts the rest.
    mutating func expertBuckets(source: @escaping () -> [Float]) -> BucketedReduceScatter? {
        guard expertsBucketed else { return nil }
        let b = BucketedReduceScatter(count: experts.count, shards: experts.shards, group: experts.group,
                                      dtype: dtype) { range in
            Array(source()[range])
        }
        expertReduction = b
        return b
    }
    private var expertReduction: BucketedReduceScatter?

    /// One micro-batch's dense gradient, in global micro-batch order.
    mutating func add(denseBucket: consuming [Float]) { denseTree.push(denseBucket) }

    /// The experts' weight gradients, already summed over the step's micro-batches.
    mutating func add(expertGradients: [Float]) { self.expertGradients = expertGradients }

    /// The rank's node of the canonical tree, then across its groups: dense, then experts.
    mutating func reduce() throws {
        if let b = buckets {
            try b.finish(into: &denseShard)
            buckets = nil
        } else {
            var full = denseTree.result() ?? [Float](repeating: 0, count: dense.count)
            denseTree = CanonicalSum(dtype: dtype)
            // Each full vector is dropped once its shard is summed: a rank holds at most one full
            // gradient vector at a time besides its shards and the receive buffer (what `plan` counts).
            try Self.reduceScatter(full, shards: dense.shards, over: dense.group, into: &denseShard, dtype: dtype)
            full = []
        }
        guard var expertFull = expertGradients else { preconditionFailure("reduce before the experts' gradients were added") }
        expertGradients = nil
        dtype.round(&expertFull)  // one micro-batch per ep group: written directly, a leaf (else a node: unchanged)
        if let b = expertReduction {
            b.backwardFinished(using: expertFull)
            try b.finish(into: &expertShard)
            expertReduction = nil
        } else {
            try Self.reduceScatter(expertFull, shards: experts.shards, over: experts.group, into: &expertShard, dtype: dtype)
        }
        expertFull = []
    }

    /// `reduceScatterCanonical` over shards of runs: as they are when each is one run in rank
    /// order; else through a copy of `x` in shard order (the same additions, so the same bits).
    static func reduceScatter(_ x: [Float], shards: [[Range<Int>]], over group: Communicator, into out: inout [Float],
                              dtype: CommDType) throws {
        var ranges: [Range<Int>] = [], at = 0
        for runs in shards {
            let n = runs.reduce(0) { $0 + $1.count }
            ranges.append(at..<(at + n))
            at += n
        }
        if zip(shards, ranges).allSatisfy({ $0.0.isEmpty || $0.0 == [$0.1] }) {
            try group.reduceScatterCanonical(x, shards: ranges, into: &out, dtype: dtype)
            return
        }
        var ordered = [Float]()
        ordered.reserveCapacity(x.count)
        for runs in shards { for r in runs { ordered.append(contentsOf: x[r]) } }
        try group.reduceScatterCanonical(ordered, shards: ranges, into: &out, dtype: dtype)
    }

    /// Alone in its group a rank's "shard" is the gradient vector itself (the expert
    /// executor's, reused next step): holding it would force a copy when it is written again.
    mutating func releaseSoloShards() {
        if dense.group.size == 1 { denseShard = [] }
        if experts.group.size == 1 { expertShard = [] }
    }
}
