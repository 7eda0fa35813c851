/// The experts a rollout's sampling pass chose, handed to a later forward over the same rows
/// (GRPO's router replay, Megatron's R3): per decoder layer, each token's K experts sorted by
/// id, −1 where the sampling pass never fed that position (the last sampled token, padding).
/// The forward compares its own choice with them — `compared` and `differing` count (token,
/// layer) pairs — and with `replay` uses them, its gate weights gathered from its own scores.
package final class RouteReplay: @unchecked Sendable {
    package let replay: Bool
    package let k: Int
    /// Layer → [tokens·K] of the forward's row-major tokens.
    package let experts: [Int: [Int]]
    package private(set) var compared = 0
    package private(set) var differing = 0

    package init(experts: [Int: [Int]], k: Int, replay: Bool) {
        self.experts = experts
        self.k = k
        self.replay = replay
    }

    /// The experts layer `layer` uses given its own choice `own` [tokens·K]: the recorded ones
    /// where there are some and `replay` is on, its own elsewhere.
    package func choose(layer: Int, own: [Int]) -> [Int] {
        guard let recorded = experts[layer] else { return own }
        precondition(recorded.count == own.count, "route replay: \(recorded.count / k) recorded tokens for \(own.count / k)")
        var used = own
        for t in 0..<(own.count / k) where recorded[t * k] >= 0 {
            let r = (t * k)..<((t + 1) * k)
            compared += 1
            if recorded[r] != own[r] {
                differing += 1
                if replay { used.replaceSubrange(r, with: recorded[r]) }
            }
        }
        return used
    }
}
