import Foundation
import Data

extension Recipe {
    /// What a stage trains, with the settings only that kind reads (docs/recipes.md). The
    /// settings every kind shares (optimizer, schedule, moe, mtp, eval, steps, batch_size,
    /// seq_len) stay on `Stage`.
    package enum StageKind: Sendable {
        case pretrain
        case sft(SFTSettings)
        case grpo(GRPOSettings)
        case reward(RewardSettings)

        /// The recipe's spelling of a kind (`kind:`), for logs and the summary table.
        package enum Name: String, CaseIterable, Sendable { case pretrain, sft, grpo, reward }

        package var name: Name {
            switch self {
            case .pretrain: return .pretrain
            case .sft: return .sft
            case .grpo: return .grpo
            case .reward: return .reward
            }
        }

        /// What a post-training stage's data holds (nil: pretraining reads token streams).
        package var postTrainingForm: PostTrainingData.Form? {
            switch self {
            case .pretrain: return nil
            case .sft: return .conversations
            case .grpo: return .prompts
            case .reward: return .preferences
            }
        }

        /// The held-out data of a post-training stage (nil: pretraining, which holds out its
        /// own stream's tail).
        package var heldOut: HeldOutData? {
            switch self {
            case .pretrain: return nil
            case .sft(let s): return s.heldOut
            case .grpo(let g): return g.heldOut
            case .reward(let r): return r.heldOut
            }
        }
    }

    /// Post-training evaluation data: a file of the stage's form, or a fraction of the training
    /// file's last items (neither: no held-out evaluation).
    package struct HeldOutData: Sendable {
        package var evalData: String?
        package var evalFraction: Double?
    }

    /// The SFT-only keys of a stage.
    package struct SFTSettings: Sendable {
        /// Passes over the conversations instead of `steps` (JSONL data).
        package var epochs: Int?
        /// Several conversations per row, without attention across them.
        package var packing = false
        package var heldOut = HeldOutData()
    }

    /// The `reward:` block of a reward-model stage (docs/reward.md), with its held-out pairs.
    package struct RewardSettings: Sendable {
        /// TRL's `center_rewards_coefficient`: weight of mean((r_c + r_r)²) in the loss (nil: none).
        package var centerRewardsCoefficient: Double?
        package var heldOut = HeldOutData()
    }

    /// The `grpo:` block of a GRPO stage (docs/grpo.md), with the stage's held-out data.
    package struct GRPOSettings: Sendable {
        /// An ablation run beside GRPO: with `shuffleRewards` the rewards are permuted across
        /// the batch's completions, so GRPO must not learn.
        package enum Control: String, CaseIterable, Sendable { case shuffleRewards = "shuffle_rewards" }

        package var numGenerations = 8
        package var promptsPerStep = 8
        package var maxCompletionLength = 8
        package var temperature = 1.0
        package var topP = 1.0
        package var beta = 0.04
        package var epsilon = 0.2
        package var epsilonHigh = 0.2
        package var lossType = GRPOObjective.LossType.dapo
        package var importanceSampling = GRPOObjective.ImportanceSampling.token
        package var topEntropyQuantile = 1.0
        package var soft = GRPOObjective.SoftWeights()
        /// Train with the experts the sampling pass chose (Megatron's R3; docs/grpo.md).
        package var routerReplay = false
        /// Importance weights between the sampling pass and π_old (nil: none).
        package var samplingCorrection: SamplingCorrection?
        package var numIterations = 1
        package var maskTruncated = false
        package var scaleRewards = GRPOObjective.RewardScaling.group
        package var rewards: [RewardSpec] = [RewardSpec(kind: .exact, weight: 1), RewardSpec(kind: .format(pattern: nil), weight: 0.2)]
        package var control: Control?
        package var heldOut = HeldOutData()
    }

    package struct RewardSpec: Sendable {
        package enum Kind: Sendable {
            case exact
            /// `pattern`: a regex (Oniguruma syntax, as tokenizers' patterns) the completion must
            /// match from its first character, as Python's `re.match` (TRL's format rewards).
            case format(pattern: String?)
            /// A shell command scoring completions (Rewards.swift `CommandReward`).
            case command(String)
            /// A reward model (a reward stage's checkpoint, or a `...ForSequenceClassification`
            /// directory) scoring prompt + completion on the grid (`ModelReward`).
            case model(checkpoint: String)
        }
        package var kind: Kind
        package var weight: Double
    }

    /// The learning-rate schedule's shape (`schedule.kind`).
    package enum ScheduleKind: String, CaseIterable, Sendable { case constant, cosine, deepseek }
}
