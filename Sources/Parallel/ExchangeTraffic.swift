/// The steps of an MoE layer's exchange that move bytes between the ranks of an ep group, in
/// the order they run: forward, then backward.
package enum ExchangePhase: String, CaseIterable, Sendable {
    /// Counts per rank (`DispatchHeader`); each assignment's token, expert and weight to the
    /// gateways; the tokens of the rows fanned out (for token dropping's statistics).
    case headers, metadata, tokens
    /// Token rows to the nodes' gateways; the gateways' sums back.
    case dispatch, combine
    /// Within a node: the gateway's rows to the experts' owners (and, backward, the output
    /// gradients), and the owners' results back (backward, the input gradients).
    case fanOut = "fan_out", fanIn = "fan_in"
    /// Backward across nodes: output gradients to the gateways; input-gradient sums and the
    /// routing weights' gradients back.
    case combineBackward = "combine_backward", dispatchBackward = "dispatch_backward"
}

/// What this rank's expert exchanges sent since the last reset: bytes and rows to ranks on
/// other nodes and to other ranks on its own node, per phase (to itself nothing travels).
package struct ExchangeTraffic: Sendable {
    package var interNodeBytes: [ExchangePhase: Int] = [:]
    package var intraNodeBytes: [ExchangePhase: Int] = [:]
    /// Rows (of the hidden width) sent to other nodes, per phase.
    package var interNodeRows: [ExchangePhase: Int] = [:]
    /// Forward exchanges run, and the tokens they routed (this rank's, over all layers).
    package var exchanges = 0, tokens = 0
    /// Seconds this rank waited for each phase's data (blocking calls, and the waits for
    /// posted rows): the expert communication not hidden behind compute.
    package var waitSeconds: [ExchangePhase: Double] = [:]

    package init() {}

    mutating func add(_ phase: ExchangePhase, bytes: Int, rows: Int, acrossNodes: Bool) {
        if acrossNodes {
            interNodeBytes[phase, default: 0] += bytes
            interNodeRows[phase, default: 0] += rows
        } else {
            intraNodeBytes[phase, default: 0] += bytes
        }
    }
}
