import Foundation
import Testing
@testable import Parallel
@testable import Training

/// `metrics.jsonl` lines: typed metrics written as the file has always been written — keys
/// sorted as JSONSerialization sorts them, its number formatting, NaN and infinities as null,
/// optional keys absent — and every stage kind's metrics keys documented.
@Suite struct MetricsLineTests {
    static func result() -> GridTrainer.StepResult {
        var r = GridTrainer.StepResult()
        r.ce = 2.5
        r.mtp = 0.25
        r.mtpWeight = 0.3
        r.balance = 1e-05
        r.aux = (1e-05, 0, 2.0 / 3.0)
        r.gradNorm = 0.1
        r.dropped = 1
        r.assigned = 3
        r.expertLoad = [[0.5, 0.25, 0.25, 0]]
        r.rankLoad = [[4, 2]]
        r.loadImbalance = [2, 1]
        r.forward = 0.125
        return r
    }

    static func common(_ r: GridTrainer.StepResult = result(), mtp: Bool = true) -> StepMetrics {
        var m = StepMetrics(stage: "sft", step: 3, globalStep: 103, tokens: 6592, lr: 3e-4, result: r, mtp: mtp)
        m.tokensPerS = 1234.5
        m.mfu = .nan
        m.elapsedS = .infinity
        (m.nanSkipped, m.ranks, m.peakRssMb, m.rankPeakRssMb) = (0, 2, 300, [300, 299.5])
        m.rankForeignWeightsMb = [0, 0]
        return m
    }

    /// The line as `RunDirectory` writes it.
    static func written(_ line: some Encodable) throws -> String {
        let dir = NSTemporaryDirectory() + "metrics-line-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let run = try RunDirectory(path: dir, checkpointDir: "checkpoints", resolvedRecipe: "", fresh: true)
        run.writeMetrics(line)
        return try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8)
    }

    static func written(_ common: StepMetrics, _ extra: some Codable) throws -> String {
        try written(MetricsLine(common: common, extra: extra))
    }

    /// A dictionary through JSONSerialization with sorted keys, non-finite numbers as null: how
    /// metrics lines were written before they were typed.
    static func serialized(_ object: [String: Any]) throws -> String {
        func clean(_ v: Any) -> Any {
            switch v {
            case let d as Double: return d.isFinite ? d : NSNull()
            case let a as [Any]: return a.map(clean)
            case let m as [String: Any]: return m.mapValues(clean)
            default: return v
            }
        }
        return String(decoding: try JSONSerialization.data(withJSONObject: clean(object), options: [.sortedKeys]), as: UTF8.self) + "\n"
    }

    static func dictionary(_ r: GridTrainer.StepResult) -> [String: Any] {
        ["stage": "sft", "step": 3, "global_step": 103, "tokens": 6592, "lr": Double(Float(3e-4)), "loss": r.loss, "ce": r.ce,
         "grad_norm": Double(r.gradNorm), "tokens_per_s": 1234.5, "mfu": Double.nan, "elapsed_s": Double.infinity,
         "aux_expert": r.aux.0, "aux_device": r.aux.1, "aux_comm": r.aux.2, "drop_fraction": r.dropFraction,
         "expert_load": r.expertLoad, "nan_skipped": 0, "ranks": 2, "rank_load": r.rankLoad, "peak_rss_mb": 300.0,
         "rank_peak_rss_mb": [300.0, 299.5], "forward_s": r.forward, "backward_s": r.backward, "optimizer_s": r.optimizer,
         "mtp_loss": r.mtp, "load_imbalance": 1.5, "load_imbalance_layers": r.loadImbalance, "rank_foreign_weights_mb": [0.0, 0.0]]
    }

    @Test func anSFTLineIsPinned() throws {
        let line = try Self.written(MetricsLine(common: Self.common(), extra: SFTMetrics(epoch: 0.75, truncatedConversationsLocal: 1)))
        #expect(line == #"{"aux_comm":0.6666666666666666,"aux_device":0,"aux_expert":1e-05,"backward_s":0,"ce":2.5,"drop_fraction":0.3333333333333333,"elapsed_s":null,"epoch":0.75,"expert_load":[[0.5,0.25,0.25,0]],"forward_s":0.125,"global_step":103,"grad_norm":0.10000000149011612,"load_imbalance":1.5,"load_imbalance_layers":[2,1],"loss":2.5750100000000002,"lr":0.0003000000142492354,"mfu":null,"mtp_loss":0.25,"nan_skipped":0,"optimizer_s":0,"peak_rss_mb":300,"rank_foreign_weights_mb":[0,0],"rank_load":[[4,2]],"rank_peak_rss_mb":[300,299.5],"ranks":2,"stage":"sft","step":3,"tokens":6592,"tokens_per_s":1234.5,"truncated_conversations_local":1}"# + "\n")
        var d = Self.dictionary(Self.result())
        d["epoch"] = 0.75
        d["truncated_conversations_local"] = 1
        #expect(line == (try Self.serialized(d)))
    }

    @Test func aGRPOLineWithAnEvaluationIsWrittenAsTheDictionaryWas() throws {
        var r = Self.result()
        r.rankCapacity = 12
        r.protectedRouted = 5
        r.protectedReceived = 4
        r.loadImbalance = []
        var m = Self.common(r, mtp: false)
        m.record(Evaluation(loss: 0.5, accuracy: 0.25, reward: nil, samples: 200))
        let generation = GenerationMetrics(rewardMean: 0.7, rewardStd: .nan, rewardsByFunction: ["exact": 0.5, "format": 1, "command": -0.0],
                                           completionLenMean: 7.25, fracZeroStdGroups: 0.125, truncatedFraction: 0, generationBatch: 4,
                                           generationS: 0.0625)
        var timed = generation
        (timed.samplingS, timed.rewardS, timed.referenceS) = (0.03125, 0.015625, 0.0078125)
        let line = try Self.written(MetricsLine(common: m, extra: GRPOMetrics(generation: timed, kl: 1e-7, clipFraction: 0, entropy: 0.5)))
        var d = Self.dictionary(r)
        for k in ["mtp_loss", "load_imbalance", "load_imbalance_layers"] { d[k] = nil }
        let extra: [String: Any] = [
            "rank_capacity": 12, "never_dropped_routed": 5, "never_dropped_received": 4, "eval_loss": 0.5, "eval_exact_match": 0.25,
            "eval_samples": 200, "reward_mean": 0.7, "reward_std": Double.nan, "rewards/exact": 0.5, "rewards/format": 1.0,
            "rewards/command": -0.0, "completion_len_mean": 7.25, "frac_zero_std_groups": 0.125, "truncated_fraction": 0.0,
            "generation_batch": 4, "generation_s": 0.0625, "sampling_s": 0.03125, "reward_s": 0.015625, "reference_s": 0.0078125,
            "kl": 1e-7, "clip_fraction": 0.0, "entropy": 0.5, "sampling_logp_difference_mean": 0.0,
            "sampling_logp_difference_max": 0.0, "routing_mismatch": 0.0, "router_replay": false]
        d.merge(extra) { $1 }
        #expect(line == (try Self.serialized(d)))
    }

    func metricsType<R: StageRunner>(_: R.Type) -> Any.Type { R.Metrics.self }

    /// The pieces docs/design.md's "How to add a stage kind" names: a runner per kind, whose
    /// metrics are the kind's struct, and every key a line of that kind can hold documented
    /// in docs/recipes.md ("Metrics"), as is the kind itself.
    @Test func everyStageKindHasARunnerAndDocumentedMetrics() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let recipes = try String(contentsOf: root.appendingPathComponent("docs/recipes.md"), encoding: .utf8)
        let section = recipes.components(separatedBy: "\n## Metrics\n")[1].components(separatedBy: "\n## ")[0]
        var r = Self.result()
        r.rankCapacity = 1
        var common = Self.common(r)
        common.record(Evaluation(loss: 0, accuracy: 0, reward: 0, samples: 1))
        for kind in Recipe.StageKind.Name.allCases {
            let runner: any StageRunner.Type, extra: any Codable
            switch kind {
            case .pretrain: (runner, extra) = (PretrainRunner.self, PretrainMetrics())
            case .sft: (runner, extra) = (SFTRunner.self, SFTMetrics(epoch: 0, conversations: 0, truncatedConversationsLocal: 0))
            case .grpo:
                let g = GenerationMetrics(rewardMean: 0, rewardStd: 0, rewardsByFunction: ["exact": 0], completionLenMean: 0,
                                          fracZeroStdGroups: 0, truncatedFraction: 0, generationBatch: 0)
                (runner, extra) = (GRPORunner.self, GRPOMetrics(generation: g, kl: 0, clipFraction: 0, entropy: 0))
            case .reward: (runner, extra) = (RewardRunner.self, RewardMetrics(accuracy: 0, margin: 0))
            }
            #expect(ObjectIdentifier(metricsType(runner)) == ObjectIdentifier(type(of: extra)), "\(kind)")
            #expect(recipes.contains("`\(kind.rawValue)`"), "docs/recipes.md does not name the stage kind \(kind)")
            let line = try Self.written(common, extra)
            let keys = try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]).keys
            for key in keys {
                let documented = key.hasPrefix("rewards/") ? "`rewards/<kind>`" : "`\(key)`"
                #expect(section.contains(documented), "docs/recipes.md (Metrics) does not list \(key), a \(kind) metrics key")
            }
        }
    }

    /// A line reads back as the struct it was written from; null (a non-finite number) as NaN.
    @Test func aLineReadsBackAsItsStruct() throws {
        let generation = GenerationMetrics(rewardMean: 0.7, rewardStd: .nan, rewardsByFunction: ["exact": 0.5, "format": 1],
                                           completionLenMean: 7.25, fracZeroStdGroups: 0.125, truncatedFraction: 0, generationBatch: 4)
        let written = MetricsLine(common: Self.common(), extra: GRPOMetrics(generation: generation, kl: 1e-7, clipFraction: 0, entropy: 0.5))
        let line = try Self.written(written)
        let read = try RunDirectory.readMetrics(line, as: MetricsLine<GRPOMetrics>.self)
        #expect(read.common.mfu.isNaN && read.common.elapsedS.isNaN && read.extra.generation.rewardStd.isNaN)
        #expect(read.common.loss == written.common.loss && read.common.expertLoad == written.common.expertLoad)
        #expect(read.common.mtpLoss == 0.25 && read.common.evalLoss == nil)
        #expect(read.extra.generation.rewardsByFunction == ["exact": 0.5, "format": 1] && read.extra.kl == 1e-7)
        // Written again, it is the same text.
        #expect(try Self.written(read) == line)
    }
}
