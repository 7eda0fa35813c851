import Foundation
import Testing
@testable import Data

/// The whole fine-tuning path with the real binary and the shipped recipes, no Python:
/// `prepare` trains a tokenizer (with a chat template) and shards, a small model is pretrained
/// on them, `convert` writes it as a Hugging Face directory (bf16 shards, index, tokenizer
/// files), recipes/finetune-hf.yaml fine-tunes that directory with SFT on a chat JSONL and GRPO
/// with a reward command, `convert` hands it back, and `generate --chat` answers from it.
@Suite(.serialized) struct FinetuneHFTests {
    static let root = TrainCLITests.root.path
    static let binary = TrainCLITests.binary

    func run(_ args: [String]) throws -> (Int32, String, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binary)
        p.arguments = args
        p.currentDirectoryURL = URL(fileURLWithPath: Self.root)
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        nonisolated(unsafe) var o = Data(), e = Data()
        let t = Thread { o = out.fileHandleForReading.readDataToEndOfFile() }
        t.start()
        e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        while !t.isFinished { usleep(1000) }
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    func metrics(_ dir: String) -> [[String: Any]] {
        ((try? String(contentsOfFile: "\(dir)/metrics.jsonl", encoding: .utf8)) ?? "").split(separator: "\n")
            .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    @Test func prepareConvertFinetuneConvertGenerate() throws {
        let t = FileManager.default.temporaryDirectory.appendingPathComponent("dt-finetune-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: t, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: t) }

        var (code, out, err) = try run(["prepare", "recipes/data/pretrain.jsonl", "--output", "\(t)/corpus", "--vocab-size", "512",
                                        "--eos", "<|im_end|>", "--special-token", "<|im_start|>", "--chat-template", "recipes/data/chat_template.jinja"])
        #expect(code == 0, "\(err)")
        for f in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "index.json"] {
            #expect(FileManager.default.fileExists(atPath: "\(t)/corpus/\(f)"), "\(f)")
        }

        (code, out, err) = try run(["train", "recipes/finetune-hf-base.yaml", "--set", "tokenizer=\(t)/corpus", "--set", "stages.0.data=\(t)/corpus",
                                    "--set", "stages.0.steps=60", "--run-dir", "\(t)/base"])
        #expect(code == 0, "\(err)\(out.suffix(400))")
        (code, out, err) = try run(["convert", "\(t)/base/checkpoints/step-00000060.h5", "\(t)/base-hf", "--dtype", "bf16", "--max-shard-size", "300KB"])
        #expect(code == 0, "\(err)")
        let files = try FileManager.default.contentsOfDirectory(atPath: "\(t)/base-hf")
        #expect(files.filter { $0.hasSuffix(".safetensors") }.count > 1 && files.contains("model.safetensors.index.json"), "\(files)")
        #expect(files.contains("chat_template.jinja") && files.contains("tokenizer_config.json"), "\(files)")
        #expect(FileManager.default.contents(atPath: "\(t)/base-hf/tokenizer.json") == FileManager.default.contents(atPath: "\(t)/corpus/tokenizer.json"))

        (code, out, err) = try run(["train", "recipes/finetune-hf.yaml", "--set", "model=\(t)/base-hf", "--set", "stages.0.epochs=1",
                                    "--set", "stages.1.steps=4", "--set", "stages.1.eval.every=2", "--run-dir", "\(t)/ft"])
        #expect(code == 0, "\(err)\(out.suffix(600))")
        let log = (try? String(contentsOfFile: "\(t)/ft/train.log", encoding: .utf8)) ?? ""
        #expect(log.contains("model weights from") && log.contains("rendered with the chat template"), "\(log.prefix(600))")
        let m = metrics("\(t)/ft")
        let sft = m.filter { $0["stage"] as? String == "sft" }.compactMap { $0["ce"] as? Double }
        let grpo = m.filter { $0["stage"] as? String == "grpo" && $0["reward_mean"] != nil }
        #expect(sft.count >= 2 && sft.last! < sft.first!, "SFT's ce falls: \(sft)")
        #expect(grpo.count >= 1 && grpo.allSatisfy { $0["rewards/command"] != nil }, "\(grpo.first ?? [:])")

        let latest = try String(contentsOfFile: "\(t)/ft/checkpoints/latest", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let ck = latest.hasPrefix("/") ? latest : "\(t)/ft/checkpoints/\((latest as NSString).lastPathComponent)"
        (code, out, err) = try run(["convert", ck, "\(t)/ft-hf", "--dtype", "bf16"])
        #expect(code == 0, "\(err)")
        #expect(FileManager.default.contents(atPath: "\(t)/ft-hf/chat_template.jinja") == FileManager.default.contents(atPath: "\(Self.root)/recipes/data/chat_template.jinja"))
        let tok = try ChatTokenizer(path: "\(t)/ft-hf")
        #expect(tok.eosToken == "<|im_end|>" && tok.template != nil)

        (code, out, err) = try run(["generate", "--checkpoint", "\(t)/ft-hf", "--chat", "--prompt", "What is two plus three?", "--max-new-tokens", "16"])
        #expect(code == 0, "\(err)")
        #expect(!out.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty && !out.contains("<|im_end|>") && err.contains("tokens"), "\(out) \(err)")

        (code, out, err) = try run(["eval", "\(t)/ft-hf", "--chat", "--data", "recipes/data/chat.jsonl", "--samples", "8", "--json"])
        #expect(code == 0, "\(err)")
        let e = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]
        #expect((e?["assistant_loss"] as? Double).map { $0.isFinite && $0 > 0 } == true && e?["conversations"] as? Int == 8, "\(out)")
    }

    /// The model directory's vocabulary must hold the tokenizer's ids; nothing is written otherwise.
    @Test func aTokenizerLargerThanTheModelIsRefused() throws {
        let t = FileManager.default.temporaryDirectory.appendingPathComponent("dt-finetune-bad-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: t) }
        let (code, _, err) = try run(["train", "recipes/finetune-hf.yaml", "--set", "model=tiny",
                                      "--set", "tokenizer=\(Self.root)/Tests/Fixtures/chat_templates/chatml", "--run-dir", t])
        #expect(code == 1 && err.contains("vocab_size") && err.contains("chatml"), "\(err)")
        #expect(!FileManager.default.fileExists(atPath: t), "nothing written")
    }
}
