import Foundation
import Testing

/// `precision: bf16` trains as float32 does: over three seeds, tiny-pretrain's held-out loss
/// after 150 steps at bf16 is within three standard errors (plus 2%) of float32's, and both
/// learn. Through the real binary (`swift test -c release` builds it; `make test`).
@Suite(.serialized) struct PrecisionTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let binary = root.appendingPathComponent(".build/release/deeptrain").path
    static let recipe = root.appendingPathComponent("recipes/tiny-pretrain.yaml").path

    func heldOutLoss(seed: Int, precision: String, dir: String) throws -> (first: Double, last: Double) {
        let r = try CommandRun(Self.binary, ["train", Self.recipe, "--run-dir", dir, "--set", "seed=\(seed)", "--set", "precision=\(precision)",
                                             "--set", "stages.0.steps=150", "--set", "stages.0.eval.every=150",
                                             "--set", "checkpoint.every=0"])
        #expect(r.status == 0, "\(r.stderr)")
        let text = try String(contentsOfFile: "\(dir)/metrics.jsonl", encoding: .utf8)
        let evals = text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .compactMap { $0["eval_loss"] as? Double }
        // The evaluation before training is in the log: "before training: held-out loss 5.5869 ...".
        let log = try String(contentsOfFile: "\(dir)/train.log", encoding: .utf8)
        let before = log.split(separator: "\n").first { $0.hasPrefix("before training: held-out loss ") }
            .flatMap { Double($0.split(separator: " ")[4]) }
        return (try #require(before, "no evaluation before training in \(dir)/train.log"), try #require(evals.last))
    }

    @Test func bf16LearnsLikeFP32OverSeeds() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("dt-precision-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: base) }
        var losses: [String: [Double]] = [:], diffs: [Double] = []
        for seed in [1, 2, 3] {
            var pair: [Double] = []
            for p in ["fp32", "bf16"] {
                let (first, last) = try heldOutLoss(seed: seed, precision: p, dir: "\(base)/\(p)-\(seed)")
                #expect(last < 0.6 * first, "\(p), seed \(seed): held-out loss \(first) → \(last)")
                losses[p, default: []].append(last)
                pair.append(last)
            }
            diffs.append(pair[1] - pair[0])
        }
        let mean = diffs.reduce(0, +) / 3
        let se = (diffs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 2).squareRoot() / 3.0.squareRoot()
        let fp32 = losses["fp32"]!.reduce(0, +) / 3
        print("held-out loss after 150 steps, seeds 1–3: fp32 \(losses["fp32"]!), bf16 \(losses["bf16"]!); bf16 − fp32 \(mean) ± \(se)")
        #expect(abs(mean) <= 3 * se + 0.02 * fp32, "bf16 − fp32 = \(mean) ± \(se) (fp32 mean \(fp32))")
    }
}
