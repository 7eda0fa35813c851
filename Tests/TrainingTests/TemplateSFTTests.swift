import Foundation
import Testing
@testable import Training
@testable import Data

/// SFT and GRPO data rendered with a model's chat template: TRL's prompt-completion split,
/// every conversation trained on, evaluation only from what the recipe names.
@Suite struct TemplateSFTTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/chat_templates").path

    func write(_ lines: [String]) throws -> String {
        let p = FileManager.default.temporaryDirectory.appendingPathComponent("dt-sft-\(UUID().uuidString).jsonl").path
        try (lines.joined(separator: "\n") + "\n").write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    static let conversations = [
        #"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}, {"role": "user", "content": "and 3+3?"}, {"role": "assistant", "content": "6 — easy."}]}"#,
        #"{"messages": [{"role": "user", "content": "Say hi in Japanese."}, {"role": "assistant", "content": "こんにちは"}]}"#,
        #"{"messages": [{"role": "user", "content": "One?"}, {"role": "assistant", "content": "1"}]}"#,
    ]

    /// The trained tokens of assistant turn i are those of render(messages[:i+1]) after
    /// render(messages[:i], add_generation_prompt=True), computed here independently.
    @Test(arguments: ["chatml", "llama3", "deepseek-v3", "qwen2.5"]) func trainsOnTheAssistantTokensTRLWould(template: String) throws {
        let tok = try ChatTokenizer(path: "\(Self.fixtures)/\(template)")
        let path = try write(Self.conversations)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let data = try PostTrainingData.open(path, form: .conversations, format: .template(tok))
        #expect(data.count == 3 && !data.hasHeldOut, "every conversation is trained on; nothing held out unasked")
        let convs = try ChatJSONL.load(path)
        for conv in convs {
            let (tokens, trained) = try ChatFormat.template(tok).render(conv)
            var want = [Bool](repeating: false, count: tokens.count)
            for (i, m) in conv.enumerated() where m.role == "assistant" {
                let prefix = try tok.applyChatTemplate(ChatFormat.messages(Array(conv[..<i])), addGenerationPrompt: true)
                let upto = try tok.applyChatTemplate(ChatFormat.messages(Array(conv[...i])), addGenerationPrompt: false)
                for j in prefix.count..<upto.count { want[j] = true }
                // The trained span decodes to the assistant's content (plus the template's end-of-turn).
                #expect(try tok.tokenizer.decode(Array(tokens[prefix.count..<upto.count])).contains(m.content), "\(template)")
            }
            #expect(trained == want, "\(template)")
            #expect(tokens == (try tok.applyChatTemplate(ChatFormat.messages(conv), addGenerationPrompt: false)))
        }
        // An SFT row trains exactly those tokens.
        let r = PostTrainingData.sftRow(try ChatFormat.template(tok).render(convs[0]), length: 128, pad: ChatFormat.template(tok).pad)
        #expect(r.targets.filter { $0 != -100 }.count == (try ChatFormat.template(tok).render(convs[0])).trained.filter { $0 }.count)
    }

    @Test func evaluationDataIsWhatTheRecipeNames() throws {
        let tok = try ChatTokenizer(path: "\(Self.fixtures)/chatml")
        let lines = (0..<20).map { #"{"messages": [{"role": "user", "content": "q\#($0)"}, {"role": "assistant", "content": "a\#($0)"}]}"# }
        let path = try write(lines), eval = try write(Array(lines.prefix(3)))
        defer { try? FileManager.default.removeItem(atPath: path); try? FileManager.default.removeItem(atPath: eval) }
        #expect(try PostTrainingData.open(path, form: .conversations, format: .template(tok)).count == 20)
        let f = try PostTrainingData.open(path, form: .conversations, format: .template(tok), evalFraction: 0.1)
        #expect(f.count == 18 && f.heldOutConversations(100).count == 2)
        let e = try PostTrainingData.open(path, form: .conversations, format: .template(tok), evalData: eval)
        #expect(e.count == 20 && e.heldOutConversations(100).count == 3)
    }

    /// A conversation the template rejects, or one whose assistant turn renders to nothing,
    /// stops the stage naming the file and line.
    @Test func rejectedConversationsNameTheLine() throws {
        let mistral = try ChatTokenizer(path: "\(Self.fixtures)/mistral")
        let path = try write([Self.conversations[1], Self.conversations[0]])
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try PostTrainingData.open(path, form: .conversations, format: .template(mistral))
            Issue.record("mistral's template took a system message")
        } catch let e as DataError {
            #expect(e.description.contains("\(path):2") && e.description.contains("Conversation roles must alternate"), "\(e)")
        }
        let empty = try ChatTokenizer(path: "\(Self.fixtures)/deepseek-v2")
        let p2 = try write([#"{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": ""}]}"#])
        defer { try? FileManager.default.removeItem(atPath: p2) }
        // DeepSeek-V2's template renders an empty assistant turn as the eos token alone: one token is trained.
        #expect(try PostTrainingData.open(p2, form: .conversations, format: .template(empty)).count == 1)
        let chatml = try ChatTokenizer(path: "\(Self.fixtures)/chatml")
        let p3 = try write([#"{"messages": [{"role": "assistant", "content": "I start"}]}"#])
        defer { try? FileManager.default.removeItem(atPath: p3) }
        do {
            _ = try PostTrainingData.open(p3, form: .conversations, format: .template(chatml))
            Issue.record("an assistant-first conversation was split")
        } catch let e as DataError {
            #expect(e.description.contains("\(p3):1") && e.description.contains("messages[0]"), "\(e)")
        }
    }

    /// A template that renders an assistant turn to nothing: the chat line is named, nothing trains.
    @Test func anAssistantTurnThatRendersToNoTokensIsNamed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("dt-notok-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: "\(Self.fixtures)/chatml/tokenizer.json", toPath: "\(dir)/tokenizer.json")
        let template = "{% for m in messages %}{% if m.role != 'assistant' %}{{ m.content }}{% endif %}{% endfor %}{% if add_generation_prompt %}A:{% endif %}"
        let config: [String: Any] = ["eos_token": "<|im_end|>", "chat_template": template]
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: "\(dir)/tokenizer_config.json"))
        let path = try write([Self.conversations[2], Self.conversations[1]])
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try PostTrainingData.open(path, form: .conversations, format: .template(try ChatTokenizer(path: dir)))
            Issue.record("trained on an assistant turn with no tokens")
        } catch let e as DataError {
            #expect(e.description.contains("\(path):1") && e.description.contains("renders to no tokens"), "\(e)")
        }
    }

    /// The format reward with a recipe's pattern: a match from the first character, untruncated.
    @Test func formatRewardTakesAPattern() throws {
        let r = AnswerFormatReward(pattern: try TokenRegex(#"[A-Z][a-z]+ plus [a-z]+ is [0-9]+\.$"#))
        let c = ["Seven plus five is 12.", "seven plus five is 12.", "So: Seven plus five is 12.", "Seven plus five is 12. More"]
        let batch = c.map { Completion(prompt: "p", answer: "12", completion: $0, truncated: false) }
            + [Completion(prompt: "p", answer: "12", completion: c[0], truncated: true)]
        #expect(try r.score(batch) == [1, 0, 0, 0, 0])
    }

    /// GRPO prompts as text or as messages, rendered with add_generation_prompt; completions
    /// decode to text without the eos token.
    @Test func grpoPromptsUseTheTemplate() throws {
        let tok = try ChatTokenizer(path: "\(Self.fixtures)/chatml")
        let path = try write([#"{"prompt": "What is 2+3?", "answer": 5}"#,
                              #"{"prompt": [{"role": "system", "content": "Terse."}, {"role": "user", "content": "7*6?"}], "answer": "42"}"#])
        defer { try? FileManager.default.removeItem(atPath: path) }
        let data = try PostTrainingData.open(path, form: .prompts, format: .template(tok))
        #expect(data.count == 2)
        let rendered = try (0..<2).map { try tok.tokenizer.decode(data.promptTokens($0, seed: 1)) }
        #expect(rendered.contains("<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n"))
        #expect(rendered.contains("<|im_start|>system\nTerse.<|im_end|>\n<|im_start|>user\n7*6?<|im_end|>\n<|im_start|>assistant\n"))
        let format = ChatFormat.template(tok)
        let ids = try tok.tokenizer.encode("42") + format.stop
        #expect(try format.text(ids) == "42")
    }
}
