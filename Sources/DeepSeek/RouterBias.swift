import Autograd

/// Aux-loss-free load balancing (DeepSeek-V3 §2.1.2): each routed expert's selection bias
/// (`e_score_correction_bias`) moves after every step by γ toward balanced load,
/// b_i ← b_i + γ·sign(mean load − load_i), from the step's assignment counts of the layer summed
/// over all ranks and micro-batches. Integer counts sum exactly in any order, so every rank —
/// whatever the dp/ep/pp layout — computes the same bits.
package enum RouterBias {
    /// Moves `bias` (E values) by ±γ from one step's `counts` (E assignment counts).
    package static func update(_ bias: Tensor, counts: [Double], speed γ: Float) {
        precondition(counts.count == bias.count, "\(counts.count) counts for a bias of \(bias.count) experts")
        let mean = counts.reduce(0, +) / Double(counts.count)
        for i in counts.indices {
            let s: Float = counts[i] < mean ? 1 : counts[i] > mean ? -1 : 0
            bias.data[i] += γ * s
        }
    }

    /// max load / mean load of one layer's counts (1 = perfectly balanced; 0 for no tokens).
    package static func imbalance(_ counts: [Double]) -> Double {
        let total = counts.reduce(0, +)
        return total == 0 ? 0 : counts.max()! / (total / Double(counts.count))
    }
}
