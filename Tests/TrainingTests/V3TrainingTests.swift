import Foundation
import Testing

/// The tiny DeepSeek-V3 preset through the real binary: recipes/demo-v3.yaml made short
/// (pretrain → SFT → GRPO, with MTP and aux-loss-free balancing), its metrics, `convert` to a
/// Hugging Face directory and back under V3's names, `generate` without the MTP depth, resume
/// restoring the router biases bit for bit, and recipe errors naming their key.
@Suite(.serialized) struct V3TrainingTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let binary = root.appendingPathComponent(".build/release/deeptrain").path
    static let recipe = root.appendingPathComponent("recipes/demo-v3.yaml").path
    static let short = ["--set", "stages.0.steps=40", "--set", "stages.1.steps=10", "--set", "stages.2.steps=2",
                        "--set", "stages.0.eval.every=0", "--set", "stages.1.eval.every=0", "--set", "stages.2.eval.every=0",
                        "--set", "stages.2.eval_samples=8", "--set", "stages.0.log_every=10", "--set", "checkpoint.every=20", "--set", "checkpoint.keep=10",
                        "--set", "threads=1"]

    func run(_ args: [String]) throws -> CommandRun { try CommandRun(Self.binary, args) }

    func metrics(_ dir: String) -> [[String: Any]] {
        let text = (try? String(contentsOfFile: "\(dir)/metrics.jsonl", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    func line(_ text: String, _ prefix: String) -> String? {
        text.split(separator: "\n").first { $0.hasPrefix(prefix) }.map(String.init)
    }

    @Test func tinyV3TrainsThroughAllStagesAndConvertsUnderV3Names() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("dt-v3-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: base) }
        let dir = "\(base)/run"
        let r = try run(["train", Self.recipe, "--run-dir", dir] + Self.short)
        #expect(r.status == 0, "\(r.stderr)")
        let m = metrics(dir)
        #expect(m.count == 52)
        let pre = m.filter { ($0["stage"] as? String) == "pretrain" }, sft = m.filter { ($0["stage"] as? String) == "sft" }
        let grpo = m.filter { ($0["stage"] as? String) == "grpo" }
        // MTP in pretraining and SFT (λ 0.3 and 0.1, folded into `loss`), not in GRPO.
        let first = try #require(pre.first), last = try #require(pre.last)
        let mtpFirst = try #require(first["mtp_loss"] as? Double), mtpLast = try #require(last["mtp_loss"] as? Double)
        #expect(mtpLast < mtpFirst, "mtp_loss \(mtpFirst) → \(mtpLast)")
        let ce = last["ce"] as! Double, loss = last["loss"] as! Double
        #expect(loss > ce + 0.3 * mtpLast - 1e-3 && loss < ce + 0.3 * mtpLast + 0.01, "loss \(loss), ce \(ce), mtp \(mtpLast)")
        #expect(sft.allSatisfy { $0["mtp_loss"] != nil } && grpo.allSatisfy { $0["mtp_loss"] == nil })
        #expect(m.allSatisfy { ($0["load_imbalance"] as? Double).map { $0 >= 1 } ?? false })
        #expect(r.stdout.contains("mtp "), "the progress line shows the MTP loss")

        // The checkpoint keeps the biases; convert writes V3's names and reads them back.
        let ck = "\(dir)/checkpoints/step-00000052.h5"
        let inspected = try run(["inspect", ck])
        let bias = try #require(line(inspected.stdout, "router bias"), "\(inspected.stdout)\(inspected.stderr)")
        #expect(!bias.contains("max |b| 0.0 "), "the biases moved: \(bias)")
        #expect(inspected.stdout.contains("mtp          1 depth(s)"))
        let hf = "\(base)/hf"
        #expect(try run(["convert", ck, hf]).status == 0)
        let index = try String(contentsOfFile: "\(hf)/config.json", encoding: .utf8)
        #expect(index.contains("\"deepseek_v3\"") && index.contains("\"num_nextn_predict_layers\" : 1"))
        let st = try run(["inspect", hf, "--tensors"])
        for name in ["model.layers.3.eh_proj.weight", "model.layers.3.enorm.weight", "model.layers.3.shared_head.norm.weight",
                     "model.layers.3.mlp.experts.7.up_proj.weight"] {
            #expect(st.stdout.contains(name), "\(name) missing from the converted directory")
        }
        #expect(line(st.stdout, "router bias") == bias)
        let back = "\(base)/back.h5"
        #expect(try run(["convert", hf, back]).status == 0)
        let again = try run(["inspect", back])
        #expect(line(again.stdout, "digest") == line(inspected.stdout, "digest") && line(again.stdout, "router bias") == bias)
        // generate leaves the MTP depth out and answers.
        let g = try run(["generate", "--checkpoint", hf, "--prompt", "12+7=", "--max-new-tokens", "4"])
        #expect(g.status == 0, "\(g.stderr)")

        // Resume from step 20 gives step 52's weights and biases bit for bit.
        let resumed = "\(base)/resumed"
        try FileManager.default.createDirectory(atPath: resumed, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "\(dir)/checkpoints/step-00000020.h5", toPath: "\(resumed)/from.h5")
        let rr = try run(["train", Self.recipe, "--run-dir", resumed, "--resume", "\(resumed)/from.h5"] + Self.short)
        #expect(rr.status == 0, "\(rr.stderr)")
        let end = try run(["inspect", "\(resumed)/checkpoints/step-00000052.h5"])
        #expect(line(end.stdout, "digest") == line(inspected.stdout, "digest") && line(end.stdout, "router bias") == bias)
    }

    @Test func v3RecipeOptionsNameTheirKey() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("dt-v3-bad-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: base) }
        let v2Bias = try run(["train", Self.recipe, "--run-dir", "\(base)/a", "--set", "model=tiny"] + Self.short)
        #expect(v2Bias.status != 0 && v2Bias.stderr.contains("moe.bias_update_speed") && v2Bias.stderr.contains("noaux_tc"), "\(v2Bias.stderr)")
        let deep = try run(["train", Self.recipe, "--run-dir", "\(base)/b", "--set", "stages.0.mtp.depth=2"] + Self.short)
        #expect(deep.status != 0 && deep.stderr.contains("mtp.depth") && deep.stderr.contains("num_nextn_predict_layers"), "\(deep.stderr)")
        let typo = try run(["train", Self.recipe, "--run-dir", "\(base)/c", "--set", "stages.0.mtp.wieght=0.2"] + Self.short)
        #expect(typo.status != 0 && typo.stderr.contains("wieght"), "\(typo.stderr)")
    }
}
