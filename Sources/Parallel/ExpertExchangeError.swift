/// An all-to-all of the expert exchange that failed on this rank. The exchange runs inside the
/// model's forward and the autograd backward, neither of which can throw, and ending the job
/// there would skip every caller: `ExpertParallel` records the failure and stops exchanging,
/// and its caller throws it at its next throwing point (`ExpertParallel.throwIfFailed`), up to
/// the command, which ends the job so no other rank waits in a collective.
public struct ExpertExchangeError: Error, CustomStringConvertible {
    public enum Pass: Sendable { case forward, backward }

    /// The rank in the ep group, the MoE layer, and the pass that failed.
    public let rank: Int
    public let layer: Int
    public let pass: Pass
    public let cause: any Error

    public var description: String {
        "rank \(rank) of the ep group, layer \(layer)\(pass == .backward ? " backward" : ""): \(cause)"
    }
}
