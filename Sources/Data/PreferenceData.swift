import Foundation

/// One preference pair of a reward model's data: two whole conversations that share their
/// prompt and differ in the last assistant turn(s), `chosen` the better.
package struct PreferencePair: Sendable, Equatable {
    package var chosen: [ChatMessage]
    package var rejected: [ChatMessage]
    /// TRL's optional per-pair `margin`: the loss asks r_chosen − r_rejected to exceed it.
    package var margin: Double?

    package init(chosen: [ChatMessage], rejected: [ChatMessage], margin: Double? = nil) {
        self.chosen = chosen
        self.rejected = rejected
        self.margin = margin
    }

    /// The messages both conversations open with (TRL's implicit prompt).
    package var sharedPrompt: [ChatMessage] {
        Array(zip(chosen, rejected).prefix { $0 == $1 }.map(\.0))
    }
}

/// Pairwise preference JSONL as TRL's RewardTrainer reads it, one pair per line:
/// `{"chosen": [messages], "rejected": [messages]}` (the prompt implicit: the messages both
/// open with), or `{"prompt": [messages], "chosen": [messages], "rejected": [messages]}`, where
/// the prompt is prepended to each; strings instead of message lists stand for a user turn
/// (the prompt) and an assistant turn (chosen and rejected). An optional numeric `margin`.
/// Each conversation must end with an assistant turn, and the two must differ.
package enum PreferenceJSONL {
    package static func load(_ path: String) throws -> [PreferencePair] { try loadNumbered(path).map(\.0) }

    /// The pairs with their line numbers. `allowAnyRole`: roles a model's chat template knows
    /// (the built-in byte format takes system, user and assistant).
    package static func loadNumbered(_ path: String, allowAnyRole: Bool = false) throws -> [(PreferencePair, Int)] {
        var out: [(PreferencePair, Int)] = []
        for (n, line) in try JSONLines.read(path) {
            let obj = try JSONLines.object(line, file: path, line: n)
            out.append((try pair(obj, file: path, line: n, allowAnyRole: allowAnyRole), n))
        }
        guard !out.isEmpty else { throw DataError(file: path, line: nil, "holds no preference pairs") }
        return out
    }

    static func pair(_ obj: [String: Any], file: String, line n: Int, allowAnyRole: Bool) throws -> PreferencePair {
        guard obj["chosen"] != nil, obj["rejected"] != nil else {
            throw DataError(file: file, line: n, "expected {\"chosen\": [messages], \"rejected\": [messages]}, "
                                + "optionally with \"prompt\" and \"margin\"")
        }
        let prompt = try obj["prompt"].map { try turns($0, key: "prompt", role: "user", file: file, line: n, allowAnyRole: allowAnyRole) } ?? []
        let chosen = prompt + (try turns(obj["chosen"]!, key: "chosen", role: "assistant", file: file, line: n, allowAnyRole: allowAnyRole))
        let rejected = prompt + (try turns(obj["rejected"]!, key: "rejected", role: "assistant", file: file, line: n,
                                           allowAnyRole: allowAnyRole))
        for (key, conv) in [("chosen", chosen), ("rejected", rejected)] where conv.last?.role != "assistant" {
            throw DataError(file: file, line: n, "\(key): the conversation must end with an assistant turn, the one it rates")
        }
        guard chosen != rejected else { throw DataError(file: file, line: n, "chosen and rejected are the same conversation") }
        var margin: Double? = nil
        if let m = obj["margin"] {
            guard let x = (m as? NSNumber)?.doubleValue, x.isFinite, !(m is Bool) else {
                throw DataError(file: file, line: n, "margin: expected a finite number")
            }
            margin = x
        }
        return PreferencePair(chosen: chosen, rejected: rejected, margin: margin)
    }

    /// A message list, or a string standing for one turn of `role`.
    static func turns(_ value: Any, key: String, role: String, file: String, line n: Int, allowAnyRole: Bool) throws -> [ChatMessage] {
        if let text = value as? String { return [ChatMessage(role: role, content: text)] }
        guard let list = value as? [Any], !list.isEmpty else {
            throw DataError(file: file, line: n, "\(key): expected a non-empty list of {\"role\", \"content\"} messages or a string")
        }
        do {
            return try ChatJSONL.parse(list, file: file, line: n, allowAnyRole: allowAnyRole)
        } catch let e as DataError {
            throw DataError(file: file, line: n, "\(key).\(e.message)")
        }
    }
}
