import Foundation
import Data

extension Recipe {
    /// What a stage trains, with the settings only that kind reads (docs/recipes.md). The
    /// settings every kind shares (optimizer, schedule, moe, mtp, eval, steps, batch_size,
    /// seq_len) stay on `Stage`.
    public enum StageKind: Sendable {
        case pretrain
        case sft(SFTSettings)
        case grpo(GRPOSettings)

        /// The recipe's spelling of a kind (`kind:`), for logs and the summary table.
        public enum Name: String, CaseIterable, Sendable { case pretrain, sft, grpo }

        public var name: Name {
            switch self {
            case .pretrain: return .pretrain
            case .sft: return .sft
            case .grpo: return .grpo
            }
        }

        /// What a post-training stage's data holds (nil: pretraining reads token streams).
        public var postTrainingForm: PostTrainingData.Form? {
            switch self {
            case .pretrain: return nil
            case .sft: return .conversations
            case .grpo: return .prompts
            }
        }

        /// The held-out data of a post-training stage (nil: pretraining, which holds out its
        /// own stream's tail).
        public var heldOut: HeldOutData? {
            switch self {
            case .pretrain: return nil
            case .sft(let s): return s.heldOut
            case .grpo(let g): return g.heldOut
            }
        }
    }

    /// Post-training evaluation data: a file of the stage's form, or a fraction of the training
    /// file's last items (neither: no held-out evaluation).
    public struct HeldOutData: Sendable {
        public var evalData: String?
        public var evalFraction: Double?
    }

    /// The SFT-only keys of a stage.
    public struct SFTSettings: Sendable {
        /// Passes over the conversations instead of `steps` (JSONL data).
        public var epochs: Int?
        /// Several conversations per row, without attention across them.
        public var packing = false
        public var heldOut = HeldOutData()
    }

    /// The `grpo:` block of a GRPO stage (docs/grpo.md), with the stage's held-out data.
    public struct GRPOSettings: Sendable {
        /// An ablation run beside GRPO: with `shuffleRewards` the rewards are permuted across
        /// the batch's completions, so GRPO must not learn.
        public enum Control: String, CaseIterable, Sendable { case shuffleRewards = "shuffle_rewards" }

        public var numGenerations = 8
        public var promptsPerStep = 8
        public var maxCompletionLength = 8
        public var temperature = 1.0
        public var topP = 1.0
        public var beta = 0.04
        public var epsilon = 0.2
        public var epsilonHigh = 0.2
        public var lossType = GRPOObjective.LossType.dapo
        public var numIterations = 1
        public var maskTruncated = false
        public var scaleRewards = GRPOObjective.RewardScaling.group
        public var rewards: [RewardSpec] = [RewardSpec(kind: .exact, weight: 1), RewardSpec(kind: .format(pattern: nil), weight: 0.2)]
        public var control: Control?
        public var heldOut = HeldOutData()
    }

    public struct RewardSpec: Sendable {
        public enum Kind: Sendable {
            case exact
            /// `pattern`: a regex (Oniguruma syntax, as tokenizers' patterns) the completion must
            /// match from its first character, as Python's `re.match` (TRL's format rewards).
            case format(pattern: String?)
            /// A shell command scoring completions (Rewards.swift `CommandReward`).
            case command(String)
        }
        public var kind: Kind
        public var weight: Double
    }

    /// The learning-rate schedule's shape (`schedule.kind`).
    public enum ScheduleKind: String, CaseIterable, Sendable { case constant, cosine, deepseek }
}
