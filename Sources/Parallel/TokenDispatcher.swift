import Autograd
import Collectives

/// Moves an MoE layer's rows between the ranks of an ep group, as Megatron-Core's all-to-all
/// token dispatcher: `dispatch` sends each (token, expert) row to the expert's owner, `combine`
/// returns the owners' results to the sources in the layout they were sent. The backward moves
/// gradients the other way round: `toOwners` for the combine's, `toSources` for the dispatch's.
struct TokenDispatcher {
    let comm: Communicator
    /// `bf16`: every row moved is rounded to bfloat16 where it is sent — to another rank or to
    /// this one, alone in the group too — and travels in half the bytes (`CommDType`).
    let dtype: CommDType

    /// What a dispatch delivers: the rows as sent (kept with them: memory is planned for both)
    /// and as received, with each received row's token index in its source's micro-batch.
    struct Dispatched {
        let sent: Storage
        let received: Storage
        let tokens: [Int64]
    }

    /// Gathers `rows` of `input` (rows `width` apart) in the send layout and sends them and
    /// their token indices to the owners.
    func dispatch(_ input: UnsafePointer<Float>, rows: SendRows, width: Int, plan: DispatchPlan) throws -> PendingExchange<Dispatched> {
        let sent = Storage(uninitialized: Swift.max(plan.rowsSent * width, 1))
        var sentTokens = rows.token.map { Int64($0) }
        if sentTokens.isEmpty { sentTokens = [0] }
        rows.gather(input, width: width, into: sent.data)
        let received = try toOwners(sent, width: width, plan: plan).wait()
        guard comm.size > 1 else { return PendingExchange(completed: Dispatched(sent: sent, received: received, tokens: sentTokens)) }
        var receivedTokens = [Int64](repeating: 0, count: Swift.max(plan.rowsReceived, 1))
        try sentTokens.withUnsafeBufferPointer { send in
            try receivedTokens.withUnsafeMutableBufferPointer { receive in
                try comm.alltoallv(send.baseAddress!, sendCounts: plan.sendCounts, sendDispls: plan.sendDisplacements,
                                   receive.baseAddress!, recvCounts: plan.receiveCounts, recvDispls: plan.receiveDisplacements)
            }
        }
        return PendingExchange(completed: Dispatched(sent: sent, received: received, tokens: receivedTokens))
    }

    /// The owners' result rows (receive layout) back to their sources (send layout).
    func combine(_ results: Storage, width: Int, plan: DispatchPlan) throws -> PendingExchange<Storage> {
        try toSources(results, width: width, plan: plan)
    }

    /// Rows in the send layout to the owners' receive layout.
    func toOwners(_ rows: Storage, width: Int, plan: DispatchPlan) throws -> PendingExchange<Storage> {
        try move(rows, width: width, plan.sendCounts, plan.sendDisplacements, to: plan.receiveCounts, plan.receiveDisplacements)
    }

    /// Rows in the receive layout back to the sources' send layout.
    func toSources(_ rows: Storage, width: Int, plan: DispatchPlan) throws -> PendingExchange<Storage> {
        try move(rows, width: width, plan.receiveCounts, plan.receiveDisplacements, to: plan.sendCounts, plan.sendDisplacements)
    }

    /// Rows of `width` floats laid out here by `counts`/`displacements` (in rows, per rank),
    /// moved to the ranks' layout `toCounts`/`toDisplacements`. Alone in the group what arrives
    /// is what was sent: `rows` itself, no copy through MPI.
    private func move(_ rows: Storage, width: Int, _ counts: [Int], _ displacements: [Int],
                      to toCounts: [Int], _ toDisplacements: [Int]) throws -> PendingExchange<Storage> {
        dtype.round(rows.data, count: counts.reduce(0, +) * width)
        guard comm.size > 1 else { return PendingExchange(completed: rows) }
        let arrived = Storage(uninitialized: Swift.max(toCounts.reduce(0, +) * width, 1))
        let sendCounts = counts.map { $0 * width }, sendDispls = displacements.map { $0 * width }
        let recvCounts = toCounts.map { $0 * width }, recvDispls = toDisplacements.map { $0 * width }
        if dtype == .bf16 {
            try comm.alltoallvBFloat16(UnsafePointer(rows.data), sendCounts: sendCounts, sendDispls: sendDispls,
                                       arrived.data, recvCounts: recvCounts, recvDispls: recvDispls)
        } else {
            try comm.alltoallv(UnsafePointer(rows.data), sendCounts: sendCounts, sendDispls: sendDispls,
                               arrived.data, recvCounts: recvCounts, recvDispls: recvDispls)
        }
        return PendingExchange(completed: arrived)
    }
}
