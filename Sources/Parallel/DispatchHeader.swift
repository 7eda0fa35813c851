/// What a source tells an expert owner before its rows arrive, one per (source, owner) pair of
/// an ep group: whose micro-batch the rows are (the owner keeps them by global micro-batch for
/// the weight-gradient tree), which sequences they come from (the owner recomputes which are
/// never dropped), the owner's capacity, how many token rows (and assignments) it
/// sends it as its node's gateway, and how many assignments each of its local experts gets.
struct DispatchHeader: Equatable {
    /// The source's global micro-batch.
    var micro: Int
    /// The micro-batch's first sequence's global index, and its number of sequences.
    var firstSequence: Int
    var sequences: Int
    /// The owner's capacity per micro-batch (its router groups' capacities); nil without dropping.
    var capacity: Int?
    /// Assignments (token, expert) for each of the owner's local experts, in expert order.
    var rowsPerExpert: [Int]
    /// As the gateway of its node (`Gateways`): token rows sent to it, one per token with any
    /// expert on the node, and their assignments.
    var tokens: Int, gatewayAssignments: Int

    var rows: Int { rowsPerExpert.reduce(0, +) }

    /// Integers per header on the wire: the fixed fields, then one count per local expert.
    static func width(localExperts: Int) -> Int { 6 + localExperts }

    /// The flat form sent by all-to-all: [micro, first sequence, capacity (−1: none), sequences,
    /// token rows and assignments to the gateway, assignments per local expert...].
    func pack(into out: inout [Int64]) {
        out += [Int64(micro), Int64(firstSequence), Int64(capacity ?? -1), Int64(sequences), Int64(tokens), Int64(gatewayAssignments)]
        out += rowsPerExpert.map { Int64($0) }
    }

    /// The header packed at `packed[start...]` for `localExperts` experts.
    init(unpacking packed: [Int64], at start: Int, localExperts: Int) {
        micro = Int(packed[start])
        firstSequence = Int(packed[start + 1])
        capacity = packed[start + 2] >= 0 ? Int(packed[start + 2]) : nil
        sequences = Int(packed[start + 3])
        tokens = Int(packed[start + 4])
        gatewayAssignments = Int(packed[start + 5])
        rowsPerExpert = (0..<localExperts).map { Int(packed[start + 6 + $0]) }
    }

    init(micro: Int, firstSequence: Int, sequences: Int, capacity: Int?, rowsPerExpert: [Int], tokens: Int, gatewayAssignments: Int) {
        self.micro = micro
        self.firstSequence = firstSequence
        self.sequences = sequences
        self.capacity = capacity
        self.rowsPerExpert = rowsPerExpert
        self.tokens = tokens
        self.gatewayAssignments = gatewayAssignments
    }
}
