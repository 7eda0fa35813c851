import Foundation
import Collectives

/// What GRPO knows of each completion of a generation batch after scoring: every reward
/// function's score, its length, whether it hit max_completion_length, and whether this rank
/// sampled it — plus whether a reward function failed on this rank. Each rank fills the
/// completions it sampled; `allreduceSum` of the packed table then gives every rank all of
/// them (each completion has exactly one contributor, so the sum is exact).
struct CompletionScores {
    /// scores[i][f]: reward function f's score of completion i.
    var scores: [[Double]]
    var lengths: [Double]
    var truncated: [Double]
    var sampledHere: [Double]
    /// Non-zero when a reward function failed on some rank.
    var failed = 0.0
    let functions: Int

    init(completions n: Int, functions k: Int) {
        functions = k
        scores = [[Double]](repeating: [Double](repeating: 0, count: k), count: n)
        lengths = [Double](repeating: 0, count: n)
        truncated = lengths
        sampledHere = lengths
    }

    var count: Int { lengths.count }

    /// Completion-major, `functions + 3` values per completion, then the failure flag.
    func packed() -> [Double] {
        var flat: [Double] = []
        flat.reserveCapacity(count * (functions + 3) + 1)
        for i in 0..<count { flat += scores[i] + [lengths[i], truncated[i], sampledHere[i]] }
        return flat + [failed]
    }

    init(unpacking flat: [Double], completions n: Int, functions k: Int) {
        self.init(completions: n, functions: k)
        for i in 0..<n {
            let row = i * (k + 3)
            scores[i] = Array(flat[row..<(row + k)])
            (lengths[i], truncated[i], sampledHere[i]) = (flat[row + k], flat[row + k + 1], flat[row + k + 2])
        }
        failed = flat[n * (k + 3)]
    }

    /// Every rank's scores, on every rank.
    func gathered(_ world: Communicator) throws -> CompletionScores {
        var flat = packed()
        try world.allreduceSum(&flat)
        return CompletionScores(unpacking: flat, completions: count, functions: functions)
    }
}
