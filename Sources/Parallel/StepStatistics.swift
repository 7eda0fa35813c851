import Collectives

/// What a step's micro-batches report, by global micro-batch: each number is filled in on the
/// rank that knows it (the loss on the last stage, a layer's balance losses on its stage), left
/// zero elsewhere, and summed over the world after the backward. Every number has one
/// contributor (or is an integer count), so MPI's sum is exact and every rank ends with the
/// same statistics.
struct StepStatistics {
    struct Micro {
        /// The logged loss: cross-entropy, w·M·ce for weighted SFT rows, or the objective's value.
        var loss = 0.0
        /// The MTP depths' mean cross-entropy (0 without MTP).
        var mtp = 0.0
        var nonFinite = false
        var dropped = 0, assigned = 0
        /// Per decoder layer: the expert, device and communication balance losses.
        var balance: [(expert: Double, device: Double, communication: Double)]
        /// The objective's own numbers (GRPO's KL, token and clip counts).
        var extra: [Double]
    }

    var micros: [Micro]
    /// Per (layer, expert): micro-batch 0's share of the assignments.
    var firstLoad: [[Double]]
    /// Per (layer, expert): the step's assignments over all micro-batches (integer counts).
    var counts: [[Double]]
    var protectedRouted = 0, protectedReceived = 0

    /// `layers`: decoder layers plus MTP depths (their blocks are layers L, L + 1, ...).
    init(microbatches: Int, layers: Int, experts: Int, extra: Int) {
        micros = Array(repeating: Micro(balance: Array(repeating: (0, 0, 0), count: layers), extra: Array(repeating: 0, count: extra)),
                       count: microbatches)
        firstLoad = Array(repeating: Array(repeating: 0, count: experts), count: layers)
        counts = firstLoad
    }

    /// Sums every rank's statistics (one allreduce of their packed form).
    mutating func sum(over world: Communicator) throws {
        var x = packed()
        try world.allreduceSum(&x)
        unpack(x)
    }

    func packed() -> [Double] {
        var x: [Double] = []
        for m in micros {
            x += [m.loss, m.mtp, m.nonFinite ? 1 : 0, Double(m.dropped), Double(m.assigned)]
            for b in m.balance { x += [b.expert, b.device, b.communication] }
            x += m.extra
        }
        for l in firstLoad { x += l }
        for l in counts { x += l }
        return x + [Double(protectedRouted), Double(protectedReceived)]
    }

    mutating func unpack(_ x: [Double]) {
        var at = 0
        func next() -> Double { defer { at += 1 }; return x[at] }
        for i in micros.indices {
            micros[i].loss = next()
            micros[i].mtp = next()
            micros[i].nonFinite = next() != 0
            micros[i].dropped = Int(next())
            micros[i].assigned = Int(next())
            for l in micros[i].balance.indices { micros[i].balance[l] = (next(), next(), next()) }
            for k in micros[i].extra.indices { micros[i].extra[k] = next() }
        }
        for l in firstLoad.indices { for e in firstLoad[l].indices { firstLoad[l][e] = next() } }
        for l in counts.indices { for e in counts[l].indices { counts[l][e] = next() } }
        protectedRouted = Int(next())
        protectedReceived = Int(next())
    }
}
