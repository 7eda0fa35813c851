import Foundation
import FileSafety

package typealias ChatMessage = SyntheticArithmetic.ChatMessage
package typealias PromptWithAnswer = SyntheticArithmetic.PromptWithAnswer

/// Bad post-training data: the file, the line, and what was expected.
package struct DataError: Error, CustomStringConvertible {
    package let file: String
    package let line: Int?
    package let message: String
    package init(file: String, line: Int?, _ message: String) {
        self.file = file
        self.line = line
        self.message = message
    }
    package var description: String { "\(file)\(line.map { ":\($0)" } ?? ""): \(message)" }
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
package enum ByteChatFormat {
    package static let endOfTurn = Int(UInt8(ascii: "\n"))
    package static let roles = ["system", "user", "assistant"]

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
    package static func render(_ messages: [ChatMessage]) -> (tokens: [Int], trained: [Bool]) {
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
    package static func prompt(_ text: String) -> [Int] {
        bytes(header("user")) + bytes(text) + [endOfTurn] + bytes(header("assistant"))
    }
}

/// Chat JSONL: one conversation per line, `{"messages": [{"role": ..., "content": ...}, ...]}`,
/// roles system (first only), user, assistant; at least one assistant turn.
package enum ChatJSONL {
    package static func load(_ path: String) throws -> [[ChatMessage]] { try loadNumbered(path).map(\.0) }

    /// Conversations with their line numbers. With a model's chat template (`allowAnyRole`)
    /// any role the template knows may appear (tool, ipython...); the built-in byte format
    /// takes system (first only), user and assistant.
    package static func loadNumbered(_ path: String, allowAnyRole: Bool = false) throws -> [([ChatMessage], Int)] {
        let lines = try JSONLines.read(path)
        var out: [([ChatMessage], Int)] = []
        for (n, line) in lines {
            let obj = try JSONLines.object(line, file: path, line: n)
            guard let messages = obj["messages"] as? [Any] else {
                throw DataError(file: path, line: n, "expected {\"messages\": [{\"role\": ..., \"content\": ...}, ...]}")
            }
            out.append((try parse(messages, file: path, line: n, allowAnyRole: allowAnyRole), n))
            guard out.last!.0.contains(where: { $0.role == "assistant" }) else {
                throw DataError(file: path, line: n, "has no assistant message: nothing to train on")
            }
        }
        guard !out.isEmpty else { throw DataError(file: path, line: nil, "holds no conversations") }
        return out
    }

    static func parse(_ messages: [Any], file: String, line n: Int, allowAnyRole: Bool) throws -> [ChatMessage] {
        var conv: [ChatMessage] = []
        for (i, m) in messages.enumerated() {
            guard let d = m as? [String: Any], let role = d["role"] as? String, let content = d["content"] as? String else {
                throw DataError(file: file, line: n, "messages[\(i)]: expected {\"role\": string, \"content\": string}")
            }
            if !allowAnyRole {
                guard ByteChatFormat.roles.contains(role) else {
                    throw DataError(file: file, line: n, "messages[\(i)]: unknown role \"\(role)\"; expected system, user or assistant")
                }
                if role == "system" && i != 0 {
                    throw DataError(file: file, line: n, "messages[\(i)]: a system message may only come first")
                }
            }
            conv.append(ChatMessage(role: role, content: content))
        }
        return conv
    }
}

/// Prompt JSONL for GRPO: `{"prompt": "...", "answer": "..."}` per line (the answer is what
/// the exact-answer reward compares with; numbers may be given as JSON numbers).
package enum PromptJSONL {
    package static func load(_ path: String) throws -> [PromptWithAnswer] { try loadNumbered(path).map(\.0) }

    /// `{"prompt": "..." or [messages...], "answer": ...}` per line, with line numbers.
    package static func loadNumbered(_ path: String) throws -> [(PromptWithAnswer, Int)] {
        var out: [(PromptWithAnswer, Int)] = []
        for (n, line) in try JSONLines.read(path) {
            let obj = try JSONLines.object(line, file: path, line: n)
            let answer: String
            if let a = obj["answer"] as? String { answer = a } else if let a = obj["answer"] as? NSNumber { answer = a.stringValue } else {
                throw DataError(file: path, line: n, "has no \"answer\"; GRPO prompts need the answer their rewards check")
            }
            if let prompt = obj["prompt"] as? String {
                out.append((PromptWithAnswer(prompt: prompt, answer: answer), n))
            } else if let list = obj["prompt"] as? [Any] {
                let messages = try ChatJSONL.parse(list, file: path, line: n, allowAnyRole: true)
                guard let user = messages.last(where: { $0.role == "user" }) else {
                    throw DataError(file: path, line: n, "prompt: the messages have no user turn")
                }
                out.append((PromptWithAnswer(prompt: user.content, answer: answer, messages: messages), n))
            } else {
                throw DataError(file: path, line: n, "expected a \"prompt\": a string or a list of {\"role\", \"content\"} messages")
            }
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

    /// One line of a JSONL file at most (a published SFT conversation is a few KB).
    static let lineBytes = 64 << 20

    static func object(_ line: Substring, file: String, line n: Int) throws -> [String: Any] {
        guard line.utf8.count <= lineBytes else {
            throw DataError(file: file, line: n, "is \(line.utf8.count) bytes; a JSONL line may be at most \(lineBytes)")
        }
        guard let obj = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
            throw DataError(file: file, line: n, "malformed JSON; expected one object per line")
        }
        return obj
    }
}

/// `deeptrain prepare` on chat JSONL: every file checked line by line, the conversations
/// written to one `conversations.jsonl` with `chat.json` describing them (count, assistant
/// tokens, lengths under the byte-level template and the `seq_len` that holds 99% of them), so
/// an SFT stage can read the directory and a recipe author can size `seq_len`. The directory
/// appears complete or not at all.
package enum ChatPrepare {
    package struct Summary: Codable, Sendable {
        package var kind = "chat"
        package var template = "byte-level (docs/grpo.md)"
        package let conversations: Int
        package let tokens: Int
        package let assistantTokens: Int
        package let longest: Int
        package let p99Length: Int
        package let files: [String]

        enum CodingKeys: String, CodingKey {
            case kind
            case template
            case conversations
            case tokens
            case assistantTokens = "assistant_tokens"
            case longest
            case p99Length = "p99_length"
            case files
        }
    }

    /// True when `path` is JSONL whose first object has "messages".
    package static func isChat(_ path: String) -> Bool {
        guard path.hasSuffix(".jsonl"), let lines = try? JSONLines.read(path), let first = lines.first,
              let obj = try? JSONLines.object(first.1, file: path, line: first.0) else { return false }
        return obj["messages"] != nil
    }

    package static func run(inputs: [String], output: String) throws -> Summary {
        var all: [[ChatMessage]] = []
        for f in inputs { all += try ChatJSONL.load(f) }
        let lengths = all.map { ByteChatFormat.render($0).tokens.count }.sorted()
        let trained = all.reduce(0) { $0 + ByteChatFormat.render($1).trained.filter { $0 }.count }
        let summary = Summary(conversations: all.count, tokens: lengths.reduce(0, +), assistantTokens: trained,
                              longest: lengths.last ?? 0, p99Length: lengths.isEmpty ? 0 : lengths[Swift.min(lengths.count - 1, lengths.count * 99 / 100)],
                              files: inputs)
        do {
            try AtomicDirectory.write(output, ownsName: { ["conversations.jsonl", "chat.json"].contains($0) }) { tmp in
                let enc = JSONEncoder()
                enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                var text = Data()
                for c in all { text += try enc.encode(["messages": c]); text += Data("\n".utf8) }
                try text.write(to: URL(fileURLWithPath: (tmp as NSString).appendingPathComponent("conversations.jsonl")))
                enc.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
                try enc.encode(summary).write(to: URL(fileURLWithPath: (tmp as NSString).appendingPathComponent("chat.json")))
            }
        } catch let e as AtomicDirectoryError {
            throw DataError(file: output, line: nil, e.message)
        } catch {
            throw DataError(file: output, line: nil, "cannot be written: \(error)")
        }
        return summary
    }

    /// The conversations file of a prepared chat directory, or nil when `dir` is not one.
    package static func conversations(in dir: String) -> String? {
        let marker = (dir as NSString).appendingPathComponent("chat.json")
        return FileManager.default.fileExists(atPath: marker) ? (dir as NSString).appendingPathComponent("conversations.jsonl") : nil
    }
}

extension DataError: InputError {}
