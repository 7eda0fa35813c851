/// An all-to-all of the expert exchange that failed on this rank. The exchange runs inside the
/// model's forward and the autograd backward, neither of which can throw, and ending the job
/// there would skip every caller: `ExpertParallel` records the failure and stops exchanging,
/// and its caller throws it at its next throwing point (`ExpertParallel.throwIfFailed`), up to
/// the command, which ends the job so no other rank waits in a collective.
package struct ExpertExchangeError: Error, CustomStringConvertible {
    package enum Pass: Sendable { case forward, backward }

    /// The rank in the ep group, the MoE layer, and the pass that failed.
    package let rank: Int
    package let layer: Int
    package let pass: Pass
    package let cause: any Error

    package var description: String {
        "rank \(rank) of the ep group, layer \(layer)\(pass == .backward ? " backward" : ""): \(cause)"
    }
}
