import Foundation
import Autograd
import Collectives

/// A flat vector's parameter allgather left in flight after the optimizer, to be waited for
/// piece by piece as the next step's forward reaches the parameters (docs/design.md §11, step
/// 4): where the group spans nodes, the link carries the other ranks' shards while the first
/// layers already compute.
///
/// Rank q's runs go to every other rank as one message each, received in place, as
/// `Communicator.allgather(runs:)` does. The receives are posted in vector order (sorted: with
/// interleaved shards the owners alternate; each owner's runs keep the order it sends them in),
/// so "every element before offset `e` has arrived" is "every receive whose run starts before
/// `e` has completed", a prefix of them (`wait(through:)`); they are posted before the sends,
/// so the prefix of all requests.
final class ParameterGather {
    private var transfers: Transfers
    /// Per receive posted, in order: where its run starts in the vector.
    private var receiveStarts: [Int] = []
    /// Receives completed so far (a prefix).
    private var completed = 0

    /// Posts every transfer of `vector`'s allgather over `group`: the rank's shard, already
    /// updated in the parameters, to the others, theirs into the parameters.
    init(_ vector: FlatVector, _ flat: FlatLayout, group: Communicator) throws {
        transfers = Transfers(on: group)
        let tag = Communicator.allgatherTag
        // Every other rank's runs, in vector order whoever owns them (interleaved shards mix owners).
        let arriving = (0..<group.size).filter { $0 != group.rank }
            .flatMap { q in vector.shardSegments(q, flat).map { (q, $0) } }
            .sorted { $0.1.at < $1.1.at }
        for (q, seg) in arriving {
            try transfers.receive(flat.pieces[seg.piece].tensor.data + seg.inPiece, count: seg.count, from: q, tag: tag)
            receiveStarts.append(seg.at)
        }
        for seg in vector.shardSegments(group.rank, flat) {
            for q in 0..<group.size where q != group.rank {
                try transfers.send(flat.pieces[seg.piece].tensor.data + seg.inPiece, count: seg.count, to: q, tag: tag)
            }
        }
    }

    /// Until every parameter element before `end` (a vector offset) holds its gathered value.
    func wait(through end: Int) throws {
        var n = completed
        while n < receiveStarts.count && receiveStarts[n] < end { n += 1 }
        guard n > completed else { return }
        try transfers.wait(prefix: n)
        completed = n
    }

    /// Until every transfer, the rank's own sends included, has completed.
    func finish() throws {
        try transfers.wait()
        completed = receiveStarts.count
    }
}

/// Where the forward waits for a `ParameterGather`: per vector, the offset after the
/// embedding and after each decoder layer's last parameter (the vectors hold parameters in
/// their canonical, forward, order).
struct GatherPoints {
    let embedding: Int
    let dense: [Int: Int]
    let experts: [Int: Int]

    init(flat: FlatLayout, dense d: FlatVector, experts e: FlatVector) {
        func ends(_ v: FlatVector, _ key: (String) -> Int?) -> [Int: Int] {
            var out: [Int: Int] = [:]
            for (i, off) in zip(v.pieces, v.offsets) {
                guard let k = key(flat.pieces[i].name) else { continue }
                out[k] = Swift.max(out[k] ?? 0, off + flat.pieces[i].tensor.count)
            }
            return out
        }
        embedding = ends(d) { $0.hasPrefix("model.embed_tokens.") ? 0 : nil }[0] ?? 0
        dense = ends(d, Self.layer)
        experts = ends(e, Self.layer)
    }

    /// N of a name `model.layers.N.…`.
    static func layer(of name: String) -> Int? {
        guard name.hasPrefix("model.layers.") else { return nil }
        return Int(name.dropFirst("model.layers.".count).prefix { $0.isNumber })
    }
}
