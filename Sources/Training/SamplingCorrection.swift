import Foundation

/// Truncated (or masked) importance sampling between the sampling pass and π_old, as TRL's
/// `vllm_importance_sampling_correction`: each token's policy term is weighted by
/// w = exp(log π_old − log p_sample) — per token, or one w per completion from the summed
/// log-ratios — cut at `clipMax` (`truncate`: clamped into [clipMin, clipMax]; `mask`: 0 outside
/// it). The KL term is not weighted.
package struct SamplingCorrection: Sendable, Equatable {
    package enum Mode: String, CaseIterable, Sendable {
        case tokenTruncate = "token_truncate", tokenMask = "token_mask"
        case sequenceTruncate = "sequence_truncate", sequenceMask = "sequence_mask"

        var perSequence: Bool { self == .sequenceTruncate || self == .sequenceMask }
        var truncates: Bool { self == .tokenTruncate || self == .sequenceTruncate }
    }

    package var mode = Mode.sequenceMask
    package var clipMin: Double?
    package var clipMax: Double? = 3
    package init(mode: Mode = .sequenceMask, clipMin: Double? = nil, clipMax: Double? = 3) {
        (self.mode, self.clipMin, self.clipMax) = (mode, clipMin, clipMax)
    }

    /// The weights, [rows·T]: `old` and `sample` per token, `mask` 1 for trained tokens.
    package func weights(old: [Float], sample: [Float], mask: [Float], rows: Int, t: Int) -> [Float] {
        let diff = (0..<(rows * t)).map { (old[$0] - sample[$0]) * mask[$0] }
        let ratio: [Float] = mode.perSequence
            ? (0..<rows).flatMap { i in
                [Float](repeating: Foundation.exp(diff[(i * t)..<((i + 1) * t)].reduce(0, +)), count: t)
            }
            : diff.map { Foundation.exp($0) }
        let lo = clipMin.map(Float.init), hi = clipMax.map(Float.init)
        return ratio.map { r in
            if mode.truncates { return Swift.min(Swift.max(r, lo ?? -.infinity), hi ?? .infinity) }
            return r < (lo ?? -.infinity) || r > (hi ?? .infinity) ? 0 : r
        }
    }
}
