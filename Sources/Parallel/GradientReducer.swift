import Collectives

/// A step's gradients on their way to the rank's shards. Each micro-batch's backward hands its
/// dense gradient over as one bucket, summed in the canonical tree (docs/design.md §6.3); after
/// the last backward the experts' weight gradients join, and `reduce` reduce-scatters the dense
/// sum over dp and the experts' over edp, in that order.
///
/// Why buckets and a separate `reduce`: the backward hands each finished bucket over and goes
/// on, so a later reducer can start the bucket's communication while the backward still
/// computes. Today `add` only sums and `reduce` communicates, both before they return.
struct GradientReducer {
    let dense: (group: Communicator, shards: [Range<Int>], count: Int)
    let experts: (group: Communicator, shards: [Range<Int>])
    private var denseTree = CanonicalSum()
    private var expertGradients: [Float]?
    /// The rank's reduced shards (dense, experts), kept from step to step: see
    /// `reduceScatterCanonical(_:shards:into:)`.
    private(set) var denseShard: [Float] = [], expertShard: [Float] = []

    init(dense: FlatVector, over denseGroup: Communicator, experts: FlatVector, over expertGroup: Communicator) {
        self.dense = (denseGroup, dense.shards, dense.count)
        self.experts = (expertGroup, experts.shards)
    }

    /// Forgets what a step that did not finish added.
    mutating func beginStep() {
        denseTree = CanonicalSum()
        expertGradients = nil
    }

    /// One micro-batch's dense gradient, in global micro-batch order.
    mutating func add(denseBucket: [Float]) { denseTree.push(denseBucket) }

    /// The experts' weight gradients, already summed over the step's micro-batches.
    mutating func add(expertGradients: [Float]) { self.expertGradients = expertGradients }

    /// The rank's node of the canonical tree, then across its groups: dense, then experts.
    mutating func reduce() throws {
        var full = denseTree.result() ?? [Float](repeating: 0, count: dense.count)
        denseTree = CanonicalSum()
        // Each full vector is dropped once its shard is summed: a rank holds at most one full
        // gradient vector at a time besides its shards and the receive buffer (what `plan` counts).
        try dense.group.reduceScatterCanonical(full, shards: dense.shards, into: &denseShard)
        full = []
        guard var expertFull = expertGradients else { preconditionFailure("reduce before the experts' gradients were added") }
        expertGradients = nil
        try experts.group.reduceScatterCanonical(expertFull, shards: experts.shards, into: &expertShard)
        expertFull = []
    }

    /// Alone in its group a rank's "shard" is the gradient vector itself (the expert
    /// executor's, reused next step): holding it would force a copy when it is written again.
    mutating func releaseSoloShards() {
        if dense.group.size == 1 { denseShard = [] }
        if experts.group.size == 1 { expertShard = [] }
    }
}
