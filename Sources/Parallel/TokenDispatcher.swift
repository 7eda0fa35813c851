import Foundation
import Autograd
import Collectives

/// Moves an MoE layer's rows between the ranks of an ep group, as Megatron-Core's all-to-all
/// token dispatcher, in named phases (`ExchangePhase`): `describe` tells each node's gateway
/// which tokens, experts and weights its rows carry, and `move` carries rows — one per (token,
/// node) to the gateways, one per (token, expert) from them to the owners and back, sums back
/// to the sources — and the backward's gradients; `weightGradients` returns the routing
/// weights' gradients.
final class TokenDispatcher {
    let comm: Communicator
    /// `bf16`: every row moved is rounded to bfloat16 where it is sent — to another rank or to
    /// this one, alone in the group too — and travels in half the bytes (`CommDType`).
    let dtype: CommDType
    /// Each ep rank's node: bytes to other nodes are counted apart.
    let nodeOf: [Int]
    private(set) var traffic = ExchangeTraffic()

    init(comm: Communicator, dtype: CommDType, nodes: [Int]? = nil) {
        self.comm = comm
        self.dtype = dtype
        nodeOf = nodes ?? [Int](repeating: 0, count: comm.size)
    }

    func resetTraffic() { traffic = ExchangeTraffic() }

    func countForward(tokens: Int) {
        traffic.exchanges += 1
        traffic.tokens += tokens
    }

    /// The assignments' descriptions (`TokenRows.metadata`, 3 integers each), `counts[q]` for
    /// rank q, to the gateways, who expect `toCounts[s]` from source s.
    func describe(_ metadata: [Int64], counts: [Int], toCounts: [Int]) throws -> [Int64] {
        try integers(metadata, counts: counts.map { 3 * $0 }, to: toCounts.map { 3 * $0 }, phase: .metadata)
    }

    /// Integers, `counts[q]` for rank q in rank order, to the ranks, which expect `toCounts[s]`.
    func integers(_ values: [Int64], counts: [Int], to toCounts: [Int], phase: ExchangePhase) throws -> [Int64] {
        count(phase, counts, bytesPerValue: 8, width: 0)
        guard comm.size > 1 else { return values }
        var arrived = [Int64](repeating: 0, count: Swift.max(toCounts.reduce(0, +), 1))
        try timed(phase) {
            try values.withUnsafeBufferPointer { s in
                try arrived.withUnsafeMutableBufferPointer { r in
                    try comm.alltoallv(s.baseAddress!, sendCounts: counts, sendDispls: displacements(counts),
                                       r.baseAddress!, recvCounts: toCounts, recvDispls: displacements(toCounts))
                }
            }
        }
        return arrived
    }

    /// Runs `body`, adding the seconds it took to `phase`'s wait.
    func timed<T>(_ phase: ExchangePhase, _ body: () throws -> T) rethrows -> T {
        let start = DispatchTime.now().uptimeNanoseconds
        defer { traffic.waitSeconds[phase, default: 0] += Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9 }
        return try body()
    }

    /// Rows of `width` floats — `counts[q]` for rank q, in rank order — to the ranks, which
    /// expect `toCounts[s]` from rank s. Rounded first (`dtype`). Posted as point-to-point
    /// messages (`Transfers`, moved along by the progress thread where the job spans nodes)
    /// and completed by `wait()`, so the caller can compute meanwhile. Alone in the group what
    /// arrives is what was sent: `rows` itself, no copy.
    func move(_ rows: Storage, width: Int, counts: [Int], to toCounts: [Int], phase: ExchangePhase) throws -> PendingExchange<Storage> {
        guard counts[comm.rank] == toCounts[comm.rank] else { throw FanOutError.inconsistent(phase: phase.rawValue) }
        dtype.round(rows.data, count: counts.reduce(0, +) * width)
        count(phase, counts, bytesPerValue: dtype.bytes, width: width)
        guard comm.size > 1 else { return PendingExchange(completed: rows) }
        let arrived = Storage(uninitialized: Swift.max(toCounts.reduce(0, +) * width, 1))
        let sendCounts = counts.map { $0 * width }, recvCounts = toCounts.map { $0 * width }
        let sendDispls = displacements(sendCounts), recvDispls = displacements(recvCounts), me = comm.rank
        (arrived.data + recvDispls[me]).update(from: rows.data + sendDispls[me], count: sendCounts[me])
        let posted = PostedRows(on: comm, bf16: dtype == .bf16, sending: sendCounts.reduce(0, +), receiving: recvCounts.reduce(0, +))
        try posted.post(rows.data, sendCounts, sendDispls, into: arrived.data, recvCounts, recvDispls)
        return PendingExchange { [self, posted] in
            try timed(phase) { try posted.wait() }
            withExtendedLifetime(rows) {}
            return arrived
        }
    }

    /// The routing weights' gradients, one float per assignment (`counts[q]` for rank q), in
    /// float32 whatever `dtype`: they are few.
    func weightGradients(_ values: [Float], counts: [Int], to toCounts: [Int]) throws -> [Float] {
        count(.dispatchBackward, counts, bytesPerValue: 4, width: 1, rows: false)
        guard comm.size > 1 else { return values }
        var arrived = [Float](repeating: 0, count: Swift.max(toCounts.reduce(0, +), 1))
        try timed(.dispatchBackward) {
            try values.withUnsafeBufferPointer { s in
                try arrived.withUnsafeMutableBufferPointer { r in
                    try comm.alltoallv(s.baseAddress!, sendCounts: counts, sendDispls: displacements(counts),
                                       r.baseAddress!, recvCounts: toCounts, recvDispls: displacements(toCounts))
                }
            }
        }
        return arrived
    }

    /// Adds what goes to each other rank to the traffic: `counts[q]` items of `width` values.
    func count(_ phase: ExchangePhase, _ counts: [Int], bytesPerValue: Int, width: Int, rows: Bool = true) {
        for (q, n) in counts.enumerated() where q != comm.rank && n > 0 {
            traffic.add(phase, bytes: n * Swift.max(width, 1) * bytesPerValue, rows: rows && width > 0 ? n : 0,
                        acrossNodes: nodeOf[q] != nodeOf[comm.rank])
        }
    }
}
