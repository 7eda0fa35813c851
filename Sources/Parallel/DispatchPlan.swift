import Collectives

/// One MoE layer's all-to-all for one micro-batch, agreed by the ep group before any row moves
/// (the dispatcher's preprocessing, in Megatron-Core's words): the headers this rank sent and
/// received, the rows each way per rank with their displacements, and the owner's segments.
///
/// Token rows travel one per (token, owner), destination rank then token; the owner fans them
/// out to its experts in the receive layout — source rank, then local expert, then token — so
/// a segment, one source's rows for one local expert, is contiguous (`FanOut`). The counts
/// here without "token" are of that layout: one row per (token, expert) assignment.
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
    /// Assignments per rank and where each rank's block starts, in the send and the receive layout.
    let sendCounts: [Int], sendDisplacements: [Int]
    let receiveCounts: [Int], receiveDisplacements: [Int]
    /// Token rows per rank, sent and received.
    let sendTokens: [Int], receiveTokens: [Int]
    /// Every (source, local expert) segment, in receive order.
    let segments: [Segment]
    /// [source][local expert]: a segment's first received row and its row count.
    let segmentStarts: [[Int]], segmentRows: [[Int]]

    var rowsSent: Int { sendCounts.reduce(0, +) }
    var rowsReceived: Int { receiveCounts.reduce(0, +) }
    /// Each source's global micro-batch, by source rank.
    var sourceMicros: [Int] { received.map(\.micro) }
    /// The owner's capacity per micro-batch (nil without dropping): every source states the same.
    var capacity: Int? { received[0].capacity }

    /// The plan for `sent` (one header per rank of `comm`, in rank order): the headers go
    /// through one all-to-all, and every count follows from them.
    static func exchange(_ sent: [DispatchHeader], over comm: Communicator, localExperts: Int) throws -> DispatchPlan {
        let width = DispatchHeader.width(localExperts: localExperts)
        var packed: [Int64] = []
        packed.reserveCapacity(sent.count * width)
        for header in sent { header.pack(into: &packed) }
        let arrived = try comm.alltoall(packed, count: width)
        let received = (0..<comm.size).map { DispatchHeader(unpacking: arrived, at: $0 * width, localExperts: localExperts) }
        return DispatchPlan(sent: sent, received: received)
    }

    init(sent: [DispatchHeader], received: [DispatchHeader]) {
        self.sent = sent
        self.received = received
        sendCounts = sent.map(\.rows)
        receiveCounts = received.map(\.rows)
        sendTokens = sent.map(\.tokens)
        receiveTokens = received.map(\.tokens)
        sendDisplacements = displacements(sendCounts)
        receiveDisplacements = displacements(receiveCounts)
        var segments: [Segment] = [], starts: [[Int]] = []
        for (source, header) in received.enumerated() {
            var start = receiveDisplacements[source]
            starts.append([])
            for (expert, rows) in header.rowsPerExpert.enumerated() {
                starts[source].append(start)
                segments.append(Segment(source: source, localExpert: expert, start: start, rows: rows))
                start += rows
            }
        }
        self.segments = segments
        segmentStarts = starts
        segmentRows = received.map(\.rowsPerExpert)
    }
}
