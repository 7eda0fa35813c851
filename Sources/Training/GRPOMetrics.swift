import Foundation

/// What a GRPO step adds to `metrics.jsonl`, under TRL's names (docs/grpo.md).
struct GRPOMetrics: Codable, Sendable {
    /// The numbers of the generation batch the step trains on.
    var generation: GenerationMetrics
    /// Mean per-token KL to the reference over the step's trained tokens.
    var kl: Double
    /// Share of the step's trained tokens (completions, at the sequence level) whose ratio was
    /// clipped (cispo: capped).
    var clipFraction: Double
    /// Mean entropy of the policy over the step's trained tokens (nats).
    var entropy: Double
    /// How the sampling pass and the training forward agree on the sampled tokens.
    var agreement = RolloutAgreement()

    enum CodingKeys: String, CodingKey, CaseIterable { case kl, clipFraction = "clip_fraction", entropy }

    init(generation: GenerationMetrics, kl: Double, clipFraction: Double, entropy: Double) {
        (self.generation, self.kl, self.clipFraction, self.entropy) = (generation, kl, clipFraction, entropy)
    }

    init(from decoder: Decoder) throws {
        generation = try GenerationMetrics(from: decoder)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        kl = try c.decode(Double.self, forKey: .kl)
        clipFraction = try c.decode(Double.self, forKey: .clipFraction)
        entropy = try c.decodeIfPresent(Double.self, forKey: .entropy) ?? 0  // absent before it was logged
        agreement = try RolloutAgreement(from: decoder)
    }

    func encode(to encoder: Encoder) throws {
        try generation.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(kl, forKey: .kl)
        try c.encode(clipFraction, forKey: .clipFraction)
        try c.encode(entropy, forKey: .entropy)
        try agreement.encode(to: encoder)
    }
}

/// A GRPO step's rollout–training agreement (docs/grpo.md): |log p_sample − log p_old| over the
/// trained sampled tokens, p_old the training forward's at the weights that sampled them, and
/// the share of (token, layer) routings where the training forward's own top-K differs from
/// the sampling pass's — with `router_replay` the share replay overrode, the routing used then
/// agreeing by construction.
struct RolloutAgreement: Codable, Sendable, Equatable {
    var logpDifferenceMean = 0.0
    var logpDifferenceMax = 0.0
    var routingMismatch = 0.0
    var routerReplay = false

    enum CodingKeys: String, CodingKey, CaseIterable {
        case logpDifferenceMean = "sampling_logp_difference_mean", logpDifferenceMax = "sampling_logp_difference_max"
        case routingMismatch = "routing_mismatch", routerReplay = "router_replay"
    }

    init(logpDifferenceMean: Double = 0, logpDifferenceMax: Double = 0, routingMismatch: Double = 0, routerReplay: Bool = false) {
        (self.logpDifferenceMean, self.logpDifferenceMax) = (logpDifferenceMean, logpDifferenceMax)
        (self.routingMismatch, self.routerReplay) = (routingMismatch, routerReplay)
    }

    init(from decoder: Decoder) throws {  // absent in metrics written before they were logged
        let c = try decoder.container(keyedBy: CodingKeys.self)
        logpDifferenceMean = try c.decodeIfPresent(Double.self, forKey: .logpDifferenceMean) ?? 0
        logpDifferenceMax = try c.decodeIfPresent(Double.self, forKey: .logpDifferenceMax) ?? 0
        routingMismatch = try c.decodeIfPresent(Double.self, forKey: .routingMismatch) ?? 0
        routerReplay = try c.decodeIfPresent(Bool.self, forKey: .routerReplay) ?? false
    }
}

/// A generation batch's rewards and completions; every step that trains on the batch (with
/// `num_iterations` > 1, several) reports them.
struct GenerationMetrics: Codable, Sendable {
    var rewardMean: Double
    var rewardStd: Double
    /// Each reward function's mean score (unweighted), by its name: `rewards/<name>`.
    var rewardsByFunction: [String: Double]
    var completionLenMean: Double
    var fracZeroStdGroups: Double
    var truncatedFraction: Double
    var generationBatch: Int
    /// Seconds spent making the batch (rank 0's): all of it, and its phases — sampling the
    /// completions, scoring them (the reward functions), and the π_old and reference forwards.
    var generationS = 0.0
    var samplingS = 0.0, rewardS = 0.0, referenceS = 0.0

    enum CodingKeys: String, CodingKey, CaseIterable {
        case rewardMean = "reward_mean", rewardStd = "reward_std", completionLenMean = "completion_len_mean"
        case fracZeroStdGroups = "frac_zero_std_groups", truncatedFraction = "truncated_fraction"
        case generationBatch = "generation_batch", generationS = "generation_s"
        case samplingS = "sampling_s", rewardS = "reward_s", referenceS = "reference_s"
    }

    /// `rewards/<name>`: keys made from the stage's reward functions.
    struct RewardKey: CodingKey {
        var stringValue: String
        init(stringValue: String) { self.stringValue = stringValue }
        init(name: String) { stringValue = "rewards/\(name)" }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    init(rewardMean: Double, rewardStd: Double, rewardsByFunction: [String: Double], completionLenMean: Double,
         fracZeroStdGroups: Double, truncatedFraction: Double, generationBatch: Int, generationS: Double = 0) {
        (self.rewardMean, self.rewardStd, self.rewardsByFunction) = (rewardMean, rewardStd, rewardsByFunction)
        (self.completionLenMean, self.fracZeroStdGroups, self.truncatedFraction) = (completionLenMean, fracZeroStdGroups, truncatedFraction)
        (self.generationBatch, self.generationS) = (generationBatch, generationS)
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        rewardMean = try c.decode(Double.self, forKey: .rewardMean)
        rewardStd = try c.decode(Double.self, forKey: .rewardStd)
        completionLenMean = try c.decode(Double.self, forKey: .completionLenMean)
        fracZeroStdGroups = try c.decode(Double.self, forKey: .fracZeroStdGroups)
        truncatedFraction = try c.decode(Double.self, forKey: .truncatedFraction)
        generationBatch = try c.decode(Int.self, forKey: .generationBatch)
        generationS = try c.decode(Double.self, forKey: .generationS)
        // Absent in metrics written before the phases were timed apart.
        samplingS = try c.decodeIfPresent(Double.self, forKey: .samplingS) ?? 0
        rewardS = try c.decodeIfPresent(Double.self, forKey: .rewardS) ?? 0
        referenceS = try c.decodeIfPresent(Double.self, forKey: .referenceS) ?? 0
        let rewards = try decoder.container(keyedBy: RewardKey.self)
        rewardsByFunction = [:]
        for key in rewards.allKeys where key.stringValue.hasPrefix("rewards/") {
            rewardsByFunction[String(key.stringValue.dropFirst("rewards/".count))] = try rewards.decode(Double.self, forKey: key)
        }
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
        try c.encode(samplingS, forKey: .samplingS)
        try c.encode(rewardS, forKey: .rewardS)
        try c.encode(referenceS, forKey: .referenceS)
        var rewards = encoder.container(keyedBy: RewardKey.self)
        for (name, mean) in rewardsByFunction { try rewards.encode(mean, forKey: RewardKey(name: name)) }
    }
}
