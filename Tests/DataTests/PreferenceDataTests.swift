import Foundation
import Testing
@testable import Data

/// Preference JSONL in TRL's RewardTrainer formats, and one clear error per bad line.
@Suite struct PreferenceDataTests {
    func write(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "pref-\(UUID().uuidString).jsonl"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func error(_ text: String) throws -> String {
        let path = try write(text)
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try PreferenceJSONL.load(path)
            return "accepted"
        } catch {
            return "\(error)"
        }
    }

    @Test func readsImplicitExplicitAndStringForms() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        let pairs = try PreferenceJSONL.load(root.appendingPathComponent("Fuzz/corpus/preferences/pairs.jsonl").path)
        #expect(pairs.count == 3)
        #expect(pairs[0].sharedPrompt == [ChatMessage(role: "user", content: "What is 2+3?")])
        #expect(pairs[0].chosen.last == ChatMessage(role: "assistant", content: "2+3=5") && pairs[0].margin == nil)
        #expect(pairs[1].chosen.count == 3 && pairs[1].sharedPrompt.count == 2 && pairs[1].margin == 1.5)
        #expect(pairs[2].rejected == [ChatMessage(role: "user", content: "What is 7+8?"), ChatMessage(role: "assistant", content: "7+8=16")])
    }

    @Test func badLinesNameTheLineAndTheKey() throws {
        let ok = #"{"prompt": "q", "chosen": "a", "rejected": "b"}"#
        let missing = try error(ok + "\n" + #"{"chosen": "a"}"#)
        #expect(missing.contains(":2:") || missing.contains("line 2"), "\(missing)")
        #expect(missing.contains("\"rejected\""), "\(missing)")
        let same = try error(#"{"prompt": "q", "chosen": "a", "rejected": "a"}"#)
        #expect(same.contains("the same conversation"), "\(same)")
        let userLast = try error(#"{"chosen": [{"role": "user", "content": "q"}], "rejected": [{"role": "assistant", "content": "b"}]}"#)
        #expect(userLast.contains("chosen") && userLast.contains("end with an assistant turn"), "\(userLast)")
        let role = try error(#"{"prompt": "q", "chosen": [{"role": "robot", "content": "a"}], "rejected": "b"}"#)
        #expect(role.contains("chosen.messages[0]") && role.contains("unknown role"), "\(role)")
        let margin = try error(#"{"prompt": "q", "chosen": "a", "rejected": "b", "margin": "big"}"#)
        #expect(margin.contains("margin: expected a finite number"), "\(margin)")
        let empty = try error("\n\n")
        #expect(empty.contains("holds no preference pairs"), "\(empty)")
    }
}
