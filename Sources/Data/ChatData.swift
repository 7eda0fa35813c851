import Foundation

public typealias ChatMessage = SyntheticArithmetic.ChatMessage
public typealias PromptWithAnswer = SyntheticArithmetic.PromptWithAnswer

/// Bad post-training data: the file, the line, and what was expected.
public struct DataError: Error, CustomStringConvertible {
    public let file: String
    public let line: Int?
    public let message: String
    public init(file: String, line: Int?, _ message: String) {
        self.file = file
        self.line = line
        self.message = message
    }
    public var description: String { "\(file)\(line.map { ":\($0)" } ?? ""): \(message)" }
}

/// How a conversation becomes tokens (byte-level, for the built-in models):
///
///     System: <content>\n        (optional, first)
///     User: <content>\n
///     Assistant: <content>\n
///
/// The newline that closes a turn is its end-of-turn token — the same byte that ends each
/// pretraining example — so a model learns to stop. SFT puts loss on assistant content and its
/// end-of-turn byte only; a GRPO prompt ends with "Assistant: " and the completion with "\n".
public enum ChatTemplate {
    public static let endOfTurn = Int(UInt8(ascii: "\n"))
    public static let roles = ["system", "user", "assistant"]

    static func header(_ role: String) -> String {
        switch role {
        case "system": return "System: "
        case "user": return "User: "
        default: return "Assistant: "
        }
    }

    static func bytes(_ s: String) -> [Int] { Array(s.utf8).map(Int.init) }

    /// Tokens of a conversation and, per token, whether it is trained on (assistant content
    /// and its end-of-turn).
    public static func render(_ messages: [ChatMessage]) -> (tokens: [Int], trained: [Bool]) {
        var tokens: [Int] = [], trained: [Bool] = []
        for m in messages {
            let head = bytes(header(m.role)), body = bytes(m.content) + [endOfTurn]
            tokens += head
            trained += [Bool](repeating: false, count: head.count)
            tokens += body
            trained += [Bool](repeating: m.role == "assistant", count: body.count)
        }
        return (tokens, trained)
    }

    /// A GRPO prompt: the user turn, then the assistant header the completion follows.
    public static func prompt(_ text: String) -> [Int] {
        bytes(header("user")) + bytes(text) + [endOfTurn] + bytes(header("assistant"))
    }
}

/// Chat JSONL: one conversation per line, `{"messages": [{"role": ..., "content": ...}, ...]}`,
/// roles system (first only), user, assistant; at least one assistant turn.
public enum ChatJSONL {
    public static func load(_ path: String) throws -> [[ChatMessage]] {
        let lines = try JSONLines.read(path)
        var out: [[ChatMessage]] = []
        for (n, line) in lines {
            let obj = try JSONLines.object(line, file: path, line: n)
            guard let messages = obj["messages"] as? [Any] else {
                throw DataError(file: path, line: n, "expected {\"messages\": [{\"role\": ..., \"content\": ...}, ...]}")
            }
            var conv: [ChatMessage] = []
            for (i, m) in messages.enumerated() {
                guard let d = m as? [String: Any], let role = d["role"] as? String, let content = d["content"] as? String else {
                    throw DataError(file: path, line: n, "messages[\(i)]: expected {\"role\": string, \"content\": string}")
                }
                guard ChatTemplate.roles.contains(role) else {
                    throw DataError(file: path, line: n, "messages[\(i)]: unknown role \"\(role)\"; expected system, user or assistant")
                }
                if role == "system" && i != 0 {
                    throw DataError(file: path, line: n, "messages[\(i)]: a system message may only come first")
                }
                conv.append(ChatMessage(role: role, content: content))
            }
            guard conv.contains(where: { $0.role == "assistant" }) else {
                throw DataError(file: path, line: n, "has no assistant message: nothing to train on")
            }
            out.append(conv)
        }
        guard !out.isEmpty else { throw DataError(file: path, line: nil, "holds no conversations") }
        return out
    }
}

/// Prompt JSONL for GRPO: `{"prompt": "...", "answer": "..."}` per line (the answer is what
/// the exact-answer reward compares with; numbers may be given as JSON numbers).
public enum PromptJSONL {
    public static func load(_ path: String) throws -> [PromptWithAnswer] {
        var out: [PromptWithAnswer] = []
        for (n, line) in try JSONLines.read(path) {
            let obj = try JSONLines.object(line, file: path, line: n)
            guard let prompt = obj["prompt"] as? String else {
                throw DataError(file: path, line: n, "expected a \"prompt\" string")
            }
            let answer: String
            if let a = obj["answer"] as? String { answer = a } else if let a = obj["answer"] as? NSNumber { answer = a.stringValue } else {
                throw DataError(file: path, line: n, "has no \"answer\"; GRPO prompts need the answer their rewards check")
            }
            out.append(PromptWithAnswer(prompt: prompt, answer: answer))
        }
        guard !out.isEmpty else { throw DataError(file: path, line: nil, "holds no prompts") }
        return out
    }
}

enum JSONLines {
    /// Non-empty lines with their 1-based numbers.
    static func read(_ path: String) throws -> [(Int, Substring)] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw DataError(file: path, line: nil, "cannot be read as UTF-8 text")
        }
        return text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
            .filter { !$0.element.allSatisfy(\.isWhitespace) }.map { ($0.offset + 1, $0.element) }
    }

    static func object(_ line: Substring, file: String, line n: Int) throws -> [String: Any] {
        guard let obj = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
            throw DataError(file: file, line: n, "malformed JSON; expected one object per line")
        }
        return obj
    }
}
