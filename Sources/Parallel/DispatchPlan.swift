import Collectives

/// One MoE layer's all-to-all for one micro-batch, agreed by the ep group before any row moves
/// (the dispatcher's preprocessing, in Megatron-Core's words): the headers this rank sent and
/// received, and what follows from them.
///
/// Rows travel in two hops. Across nodes, one row per (token, node) goes to the node's
/// gateway (`Gateways`; `sendTokens`/`receiveTokens`). Within the node, the gateway fans them
/// out to the owners (`FanOut`), who receive one row per (token, expert) laid out by gateway,
/// then source, then local expert, then token — so a segment, one source's rows for one local
/// expert, is contiguous (`receiveCounts` by gateway rank, `segments`).
struct DispatchPlan {
    /// One source's rows for one local expert: its first received row and its row count.
    struct Segment {
        let source: Int
        let localExpert: Int
        let start: Int
        let rows: Int
    }

    /// Per rank: the header this rank sent it, and the one it sent this rank.
    let sent: [DispatchHeader]
    let received: [DispatchHeader]
    /// Across nodes: token rows and assignments to each gateway, and from each source.
    let sendTokens: [Int], receiveTokens: [Int]
    let sendAssignments: [Int], receiveAssignments: [Int]
    /// Within the node: the rows this rank's experts receive from each gateway.
    let receiveCounts: [Int]
    /// Every (source, local expert) segment, in receive order.
    let segments: [Segment]
    /// [source][local expert]: a segment's first received row and its row count.
    let segmentStarts: [[Int]], segmentRows: [[Int]]

    var rowsReceived: Int { receiveCounts.reduce(0, +) }

    /// Whether this rank sends token rows to no gateway but itself and receives none but its
    /// own (its ep group on one node): the dispatch across nodes moves nothing then.
    func onlyOwnRows(me: Int) -> Bool {
        sendTokens.indices.allSatisfy { $0 == me || (sendTokens[$0] == 0 && receiveTokens[$0] == 0) }
    }
    /// Each source's global micro-batch, by source rank.
    var sourceMicros: [Int] { received.map(\.micro) }
    /// The owner's capacity per micro-batch (nil without dropping): every source states the same.
    var capacity: Int? { received[0].capacity }

    /// The plan for `sent` (one header per rank of `comm`, in rank order): the headers go
    /// through one all-to-all, and every count follows from them.
    static func exchange(_ sent: [DispatchHeader], over comm: Communicator, gateways: Gateways) throws -> DispatchPlan {
        let width = DispatchHeader.width(localExperts: gateways.local)
        var packed: [Int64] = []
        packed.reserveCapacity(sent.count * width)
        for header in sent { header.pack(into: &packed) }
        let arrived = try comm.alltoall(packed, count: width)
        let received = (0..<comm.size).map { DispatchHeader(unpacking: arrived, at: $0 * width, localExperts: gateways.local) }
        return DispatchPlan(sent: sent, received: received, gateways: gateways, me: comm.rank)
    }

    init(sent: [DispatchHeader], received: [DispatchHeader], gateways: Gateways, me: Int) {
        self.sent = sent
        self.received = received
        sendTokens = sent.map(\.tokens)
        receiveTokens = received.map(\.tokens)
        sendAssignments = sent.map(\.gatewayAssignments)
        receiveAssignments = received.map(\.gatewayAssignments)
        let size = received.count, local = gateways.local
        var segments: [Segment] = [], receiveCounts = [Int](repeating: 0, count: size)
        var starts = [[Int]](repeating: [Int](repeating: 0, count: local), count: size)
        var start = 0
        for gateway in gateways.ranksOn[gateways.nodeOf[me]]! {
            let before = start
            for source in gateways.sources(forwardedBy: gateway) {
                for (expert, rows) in received[source].rowsPerExpert.enumerated() {
                    starts[source][expert] = start
                    segments.append(Segment(source: source, localExpert: expert, start: start, rows: rows))
                    start += rows
                }
            }
            receiveCounts[gateway] = start - before
        }
        self.receiveCounts = receiveCounts
        self.segments = segments
        segmentStarts = starts
        segmentRows = received.map(\.rowsPerExpert)
    }
}
