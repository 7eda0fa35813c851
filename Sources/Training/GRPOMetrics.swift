import Foundation

/// What a GRPO step adds to `metrics.jsonl`, under TRL's names (docs/grpo.md).
struct GRPOMetrics: Encodable, Sendable {
    /// The numbers of the generation batch the step trains on.
    var generation: GenerationMetrics
    /// Mean per-token KL to the reference over the step's trained tokens.
    var kl: Double
    /// Share of the step's trained tokens whose ratio was clipped.
    var clipFraction: Double

    enum CodingKeys: String, CodingKey, CaseIterable { case kl, clipFraction = "clip_fraction" }

    func encode(to encoder: Encoder) throws {
        try generation.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(kl, forKey: .kl)
        try c.encode(clipFraction, forKey: .clipFraction)
    }
}

/// A generation batch's rewards and completions; every step that trains on the batch (with
/// `num_iterations` > 1, several) reports them.
struct GenerationMetrics: Encodable, Sendable {
    var rewardMean: Double
    var rewardStd: Double
    /// Each reward function's mean score (unweighted), by its name: `rewards/<name>`.
    var rewardsByFunction: [String: Double]
    var completionLenMean: Double
    var fracZeroStdGroups: Double
    var truncatedFraction: Double
    var generationBatch: Int
    /// Seconds spent sampling and scoring the batch.
    var generationS = 0.0

    enum CodingKeys: String, CodingKey, CaseIterable {
        case rewardMean = "reward_mean", rewardStd = "reward_std", completionLenMean = "completion_len_mean"
        case fracZeroStdGroups = "frac_zero_std_groups", truncatedFraction = "truncated_fraction"
        case generationBatch = "generation_batch", generationS = "generation_s"
    }

    /// `rewards/<name>`: keys made from the stage's reward functions.
    struct RewardKey: CodingKey {
        var stringValue: String
        init(stringValue: String) { self.stringValue = stringValue }
        init(name: String) { stringValue = "rewards/\(name)" }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(rewardMean, forKey: .rewardMean)
        try c.encode(rewardStd, forKey: .rewardStd)
        try c.encode(completionLenMean, forKey: .completionLenMean)
        try c.encode(fracZeroStdGroups, forKey: .fracZeroStdGroups)
        try c.encode(truncatedFraction, forKey: .truncatedFraction)
        try c.encode(generationBatch, forKey: .generationBatch)
        try c.encode(generationS, forKey: .generationS)
        var rewards = encoder.container(keyedBy: RewardKey.self)
        for (name, mean) in rewardsByFunction { try rewards.encode(mean, forKey: RewardKey(name: name)) }
    }
}
