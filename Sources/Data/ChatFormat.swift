import Foundation

/// How post-training turns conversations into tokens and completions back into text: the
/// built-in byte format (`ByteChatFormat`), or a model's tokenizer with its chat template.
///
/// With a template, the tokens trained on follow TRL's prompt-completion split: for assistant
/// message i, the tokens of render(messages[:i+1]) after those of render(messages[:i],
/// add_generation_prompt=True); a GRPO prompt is render(prompt, add_generation_prompt=True)
/// and a completion ends at the tokenizer's eos token.
package enum ChatFormat: @unchecked Sendable {
    case bytes
    case template(ChatTokenizer)

    package var isTemplate: Bool { if case .template = self { return true }; return false }

    /// The ids generation stops at.
    package var stop: [Int] {
        switch self {
        case .bytes: return [ByteChatFormat.endOfTurn]
        case .template(let t): return t.eosId.map { [$0] } ?? []
        }
    }

    /// What fills a row after its tokens (never trained on).
    package var pad: Int {
        switch self {
        case .bytes: return ByteChatFormat.endOfTurn
        case .template(let t): return t.specialTokens["pad_token"].flatMap { t.tokenizer.id(of: $0) } ?? t.eosId ?? 0
        }
    }

    package var vocabularySize: Int {
        switch self {
        case .bytes: return 256
        case .template(let t): return t.tokenizer.vocabularySize
        }
    }

    static func messages(_ conv: [ChatMessage]) -> JinjaValue {
        .array(conv.map { .object(JinjaObject([("role", .string($0.role)), ("content", .string($0.content))])) })
    }

    /// A conversation's tokens and, per token, whether it is trained on.
    /// - Throws: a message saying which assistant turn cannot be split (template errors included).
    package func render(_ conv: [ChatMessage]) throws -> (tokens: [Int], trained: [Bool]) {
        guard case .template(let t) = self else { return ByteChatFormat.render(conv) }
        let full = try t.applyChatTemplate(Self.messages(conv), addGenerationPrompt: false)
        var trained = [Bool](repeating: false, count: full.count)
        for (i, m) in conv.enumerated() where m.role == "assistant" {
            guard i > 0 else { throw TemplateError("messages[0] is an assistant turn: there is no prompt before it to split at", line: 0) }
            let prefix = try t.applyChatTemplate(Self.messages(Array(conv[..<i])), addGenerationPrompt: true)
            let upto = try t.applyChatTemplate(Self.messages(Array(conv[...i])), addGenerationPrompt: false)
            guard upto.count > prefix.count, Array(upto.prefix(prefix.count)) == prefix else {
                throw TemplateError(upto.count <= prefix.count
                    ? "messages[\(i)] (assistant) renders to no tokens after the prompt: nothing to train on"
                    : "messages[\(i)] (assistant): the rendering of messages[:\(i)] with add_generation_prompt is not a token prefix of messages[:\(i + 1)], so the turn cannot be split", line: 0)
            }
            guard upto.count <= full.count, Array(full.prefix(upto.count)) == upto else {
                throw TemplateError("messages[\(i)] (assistant): messages[:\(i + 1)] does not render as a prefix of the whole conversation", line: 0)
            }
            for j in prefix.count..<upto.count { trained[j] = true }
        }
        return (full, trained)
    }

    /// The tokens a completion follows: the prompt conversation with the assistant header.
    package func prompt(_ p: PromptWithAnswer) throws -> [Int] {
        switch self {
        case .bytes: return ByteChatFormat.prompt(p.prompt)
        case .template(let t): return try t.applyChatTemplate(Self.messages(p.conversation), addGenerationPrompt: true)
        }
    }

    /// A completion's text for the rewards (its stop token left out, special tokens skipped).
    /// - Throws: the tokenizer's `TokenizerError` when a decoder regex runs past its step budget.
    package func text(_ ids: [Int]) throws -> String {
        switch self {
        case .bytes: return String(decoding: ids.filter { $0 != ByteChatFormat.endOfTurn }.map { UInt8(clamping: $0) }, as: UTF8.self)
        case .template(let t): return try t.tokenizer.decode(ids.filter { !stop.contains($0) }, skipSpecial: true)
        }
    }
}
