import Foundation
import Parallel

/// What every step of every stage writes to `metrics.jsonl` (docs/recipes.md "Metrics"), under
/// the file's key names. Optional keys are absent from a line when nil. A non-finite number is
/// written as null and read back as NaN (`RunDirectory.readMetrics`).
struct StepMetrics: Codable, Sendable {
    var stage: String
    var step: Int
    var globalStep: Int
    var tokens: Int
    var lr: Double
    var loss: Double
    var ce: Double
    var gradNorm: Double
    var tokensPerS: Double
    var mfu: Double
    var elapsedS: Double
    var auxExpert: Double
    var auxDevice: Double
    var auxComm: Double
    var dropFraction: Double
    var expertLoad: [[Double]]
    var nanSkipped: Int
    var ranks: Int
    var rankLoad: [[Int]]
    var peakRssMb: Double
    var rankPeakRssMb: [Double]
    var forwardS: Double
    var backwardS: Double
    var optimizerS: Double
    var mtpLoss: Double?
    var loadImbalance: Double?
    var loadImbalanceLayers: [Double]?
    var rankCapacity: Int?
    var neverDroppedRouted: Int?
    var neverDroppedReceived: Int?
    var evalLoss: Double?
    var evalExactMatch: Double?
    /// Reward models: held-out pairwise accuracy (TRL's `eval_accuracy`).
    var evalAccuracy: Double?
    var evalSamples: Int?
    var evalReward: Double?
    /// Measured after the step's evaluation, so it is set last.
    var rankForeignWeightsMb: [Double] = []

    enum CodingKeys: String, CodingKey, CaseIterable {
        case stage, step, globalStep = "global_step", tokens, lr, loss, ce, gradNorm = "grad_norm", tokensPerS = "tokens_per_s"
        case mfu, elapsedS = "elapsed_s", auxExpert = "aux_expert", auxDevice = "aux_device", auxComm = "aux_comm"
        case dropFraction = "drop_fraction", expertLoad = "expert_load", nanSkipped = "nan_skipped", ranks, rankLoad = "rank_load"
        case peakRssMb = "peak_rss_mb", rankPeakRssMb = "rank_peak_rss_mb", forwardS = "forward_s", backwardS = "backward_s"
        case optimizerS = "optimizer_s", mtpLoss = "mtp_loss", loadImbalance = "load_imbalance", loadImbalanceLayers = "load_imbalance_layers"
        case rankCapacity = "rank_capacity", neverDroppedRouted = "never_dropped_routed", neverDroppedReceived = "never_dropped_received"
        case evalLoss = "eval_loss", evalExactMatch = "eval_exact_match", evalSamples = "eval_samples", evalReward = "eval_reward"
        case evalAccuracy = "eval_accuracy"
        case rankForeignWeightsMb = "rank_foreign_weights_mb"
    }

    /// The step's own numbers; `mtp`: whether the stage trains MTP depths.
    init(stage: String, step: Int, globalStep: Int, tokens: Int, lr: Float, result r: GridTrainer.StepResult, mtp: Bool) {
        self.stage = stage
        self.step = step
        self.globalStep = globalStep
        self.tokens = tokens
        self.lr = Double(lr)
        (loss, ce, gradNorm, dropFraction) = (r.loss, r.ce, Double(r.gradNorm), r.dropFraction)
        (auxExpert, auxDevice, auxComm) = (r.aux.0, r.aux.1, r.aux.2)
        (expertLoad, rankLoad) = (r.expertLoad, r.rankLoad)
        (forwardS, backwardS, optimizerS) = (r.forward, r.backward, r.optimizer)
        (tokensPerS, mfu, elapsedS, nanSkipped, ranks, peakRssMb, rankPeakRssMb) = (0, 0, 0, 0, 0, 0, [])
        if mtp { mtpLoss = r.mtp }
        if !r.loadImbalance.isEmpty {
            loadImbalance = r.loadImbalance.reduce(0, +) / Double(r.loadImbalance.count)
            loadImbalanceLayers = r.loadImbalance
        }
        if let cap = r.rankCapacity {
            rankCapacity = cap
            neverDroppedRouted = r.protectedRouted
            neverDroppedReceived = r.protectedReceived
        }
    }

    /// A held-out evaluation's numbers (exact match and its sample count only where answers
    /// are checked; the reward only on world rank 0).
    mutating func record(_ e: Evaluation) {
        evalLoss = e.loss
        if let acc = e.accuracy {
            evalExactMatch = acc
            evalSamples = e.samples
        }
        evalReward = e.reward
        if let pairwise = e.pairwiseAccuracy {
            evalAccuracy = pairwise
            evalSamples = e.samples
        }
    }
}

/// A pretraining step writes the common metrics only.
struct PretrainMetrics: Codable, Sendable {}

/// What an SFT step adds.
struct SFTMetrics: Codable, Sendable {
    /// Passes over the conversations before this step (JSONL data, unpacked).
    var epoch: Double?
    /// Conversations consumed so far (packed rows).
    var conversations: Int?
    /// This rank's rows cut to seq_len in the step.
    var truncatedConversationsLocal: Int

    enum CodingKeys: String, CodingKey, CaseIterable {
        case epoch, conversations, truncatedConversationsLocal = "truncated_conversations_local"
    }
}

/// One line of `metrics.jsonl`: the common metrics and the stage kind's own, in one object.
struct MetricsLine<Extra: Codable>: Codable {
    var common: StepMetrics
    var extra: Extra

    init(common: StepMetrics, extra: Extra) {
        self.common = common
        self.extra = extra
    }

    init(from decoder: Decoder) throws {
        common = try StepMetrics(from: decoder)
        extra = try Extra(from: decoder)
    }

    func encode(to encoder: Encoder) throws {
        try common.encode(to: encoder)
        try extra.encode(to: encoder)
    }
}
