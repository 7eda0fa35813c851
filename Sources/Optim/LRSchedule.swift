import Foundation

/// Learning rate as a function of the optimizer step (0-based), with linear warmup.
package enum LRSchedule: Sendable, Equatable {
    /// Warmup, then the peak rate.
    case constant(peak: Double, warmup: Int)
    /// Warmup, then a half cosine from the peak down to `minRatio`·peak at `total` steps.
    case cosine(peak: Double, warmup: Int, total: Int, minRatio: Double)
    /// DeepSeek-V2's: warmup, then ×`factor` (0.316) at 60% and again at 90% of `total` steps.
    case deepseekStep(peak: Double, warmup: Int, total: Int, factor: Double)

    package func lr(at step: Int) -> Double {
        switch self {
        case let .constant(peak, warmup):
            return warmupFactor(step, warmup) * peak
        case let .cosine(peak, warmup, total, minRatio):
            if step < warmup { return warmupFactor(step, warmup) * peak }
            let span = Double(max(total - warmup, 1))
            let progress = min(Double(step - warmup) / span, 1)
            return peak * (minRatio + (1 - minRatio) * 0.5 * (1 + Foundation.cos(Double.pi * progress)))
        case let .deepseekStep(peak, warmup, total, factor):
            if step < warmup { return warmupFactor(step, warmup) * peak }
            // Boundaries as DeepSeek-V2 states them: 60% and 90% of the training steps.
            if step >= Int((0.9 * Double(total)).rounded(.down)) { return peak * factor * factor }
            if step >= Int((0.6 * Double(total)).rounded(.down)) { return peak * factor }
            return peak
        }
    }

    /// (step + 1) / warmup during warmup, so step 0 already moves the weights.
    func warmupFactor(_ step: Int, _ warmup: Int) -> Double {
        warmup > 0 && step < warmup ? Double(step + 1) / Double(warmup) : 1
    }
}
