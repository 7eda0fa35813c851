import Foundation
import FileSafety
import Tokenizers

/// A model's tokenizer as transformers loads it from a directory: tokenizer.json, the special
/// tokens of tokenizer_config.json, and the chat template — `chat_template.jinja` (as
/// transformers 5 saves it), `chat_template.json`, or tokenizer_config.json's `chat_template`
/// (a string, or a list of named templates of which `default` is used).
package final class ChatTokenizer: @unchecked Sendable {
    package let tokenizer: Tokenizer
    package let template: ChatTemplate?
    /// `bos_token`, `eos_token`, `pad_token`, `unk_token` as the template sees them.
    package let specialTokens: [String: String]
    package let directory: String?

    package init(tokenizer: Tokenizer, template: ChatTemplate?, specialTokens: [String: String], directory: String?) {
        self.tokenizer = tokenizer
        self.template = template
        self.specialTokens = specialTokens
        self.directory = directory
    }

    /// Reads a directory (tokenizer.json beside tokenizer_config.json and an optional template
    /// file) or a lone tokenizer.json (no template, no special-token names).
    package convenience init(path: String) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw TokenizerError(source: path, message: "does not exist (expected a tokenizer.json or a directory holding one)")
        }
        guard isDir.boolValue else {
            try self.init(tokenizer: Tokenizer(path: path), template: nil, specialTokens: [:], directory: nil)
            return
        }
        var files: [String: Data] = [:]
        for name in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "chat_template.json"] {
            let file = (path as NSString).appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: file) else { continue }
            let limit = name == "tokenizer.json" ? Self.tokenizerBytes : Self.templateBytes
            do { files[name] = try readBoundedFile(file, limit: limit, what: name) } catch let e as BoundedFileError {
                throw TokenizerError(source: file, message: e.message)
            }
        }
        guard files["tokenizer.json"] != nil else { throw TokenizerError(source: path, message: "is a directory without tokenizer.json") }
        try self.init(files: files, directory: path)
    }

    /// The same from the files' contents (a checkpoint carries them in /tokenizer); `directory`
    /// names where they came from in messages.
    package convenience init(files: [String: Data], directory path: String) throws {
        func at(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }
        guard let json = files["tokenizer.json"] else { throw TokenizerError(source: path, message: "has no tokenizer.json") }
        let tok = try Tokenizer(json: json, source: at("tokenizer.json"))
        let configPath = at("tokenizer_config.json")
        var config: [String: Any] = [:]
        if let data = files["tokenizer_config.json"] {
            guard let c = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                throw TokenizerError(source: configPath, message: "is not a JSON object")
            }
            config = c
        }
        var specials: [String: String] = [:]
        for key in ["bos_token", "eos_token", "pad_token", "unk_token", "sep_token", "cls_token", "mask_token"] {
            if let s = config[key] as? String { specials[key] = s }
            else if let o = config[key] as? [String: Any], let s = o["content"] as? String { specials[key] = s }
        }
        var template: ChatTemplate? = nil
        let jinjaPath = at("chat_template.jinja"), jsonPath = at("chat_template.json")
        if let data = files["chat_template.jinja"] {
            template = try ChatTemplate(source: String(decoding: data, as: UTF8.self), origin: jinjaPath)
        } else if let data = files["chat_template.json"] {
            guard let o = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any], let s = o["chat_template"] as? String else {
                throw TokenizerError(source: jsonPath, message: "expected an object with a string chat_template")
            }
            template = try ChatTemplate(source: s, origin: "\(jsonPath) (chat_template)")
        } else if let raw = config["chat_template"] {
            if let s = raw as? String {
                template = try ChatTemplate(source: s, origin: "\(configPath) (chat_template)")
            } else if let list = raw as? [[String: Any]] {
                let named = list.compactMap { d -> (String, String)? in
                    guard let n = d["name"] as? String, let t = d["template"] as? String else { return nil }
                    return (n, t)
                }
                guard named.count == list.count else {
                    throw TokenizerError(source: configPath, message: "chat_template: expected a string or a list of {\"name\", \"template\"}")
                }
                guard let d = named.first(where: { $0.0 == "default" }) else {
                    throw TokenizerError(source: configPath, message: "chat_template: the list has no template named \"default\" (names: \(named.map(\.0).joined(separator: ", ")))")
                }
                template = try ChatTemplate(source: d.1, origin: "\(configPath) (chat_template \"default\")")
            } else if !(raw is NSNull) {
                throw TokenizerError(source: configPath, message: "chat_template: expected a string or a list of {\"name\", \"template\"}")
            }
        }
        self.init(tokenizer: tok, template: template, specialTokens: specials, directory: path)
    }

    package var eosToken: String? { specialTokens["eos_token"] }
    package var eosId: Int? { eosToken.flatMap { tokenizer.id(of: $0) } }

    /// The text `apply_chat_template(messages, tokenize=False)` gives.
    package func render(_ messages: JinjaValue, addGenerationPrompt: Bool, tools: JinjaValue? = nil) throws -> String {
        guard let template else {
            throw TokenizerError(source: directory ?? "tokenizer", message: "has no chat template (expected chat_template.jinja or tokenizer_config.json's chat_template)")
        }
        var vars: [String: JinjaValue] = [:]
        for (k, v) in specialTokens { vars[k] = .string(v) }
        if let tools { vars["tools"] = tools }
        return try template.render(messages: try Self.normalized(messages), addGenerationPrompt: addGenerationPrompt, variables: vars)
    }

    /// A chat template, and the small JSON files beside it (published templates are under 20 KB).
    package static let templateBytes = 4 << 20
    /// A tokenizer.json (published ones are at most about 20 MB).
    package static let tokenizerBytes = 512 << 20

    static let reasoningFields = ["reasoning_content", "thinking", "reasoning"]

    /// What transformers 5 hands the template: messages without their null-valued keys (so a
    /// template's `is defined` sees `"content": null` as missing), and a message's reasoning
    /// also under `thinking` and `reasoning_content`.
    static func normalized(_ messages: JinjaValue) throws -> JinjaValue {
        guard case .array(let list) = messages else { throw TemplateError("messages must be a list of objects", line: 0) }
        if list.isEmpty { throw TemplateError("cannot apply the chat template to an empty conversation", line: 0) }
        return .array(try list.enumerated().map { i, m in
            guard case .object(let o) = m else { throw TemplateError("messages[\(i)] must be an object with role and content", line: 0) }
            var kept = JinjaObject()
            for (k, v) in o.pairs { if case .none = v { continue }; kept[k] = v }
            guard let reasoning = reasoningFields.lazy.compactMap({ kept[$0] }).first else { return .object(kept) }
            var aliased = JinjaObject()
            aliased["thinking"] = reasoning
            for (k, v) in kept.pairs { aliased[k] = v }
            aliased["reasoning_content"] = reasoning
            return .object(aliased)
        })
    }

    /// The ids `apply_chat_template(messages, tokenize=True)` gives: the rendered text encoded
    /// without the post-processor's special tokens (the template writes them).
    package func applyChatTemplate(_ messages: JinjaValue, addGenerationPrompt: Bool, tools: JinjaValue? = nil) throws -> [Int] {
        try tokenizer.encode(try render(messages, addGenerationPrompt: addGenerationPrompt, tools: tools), addSpecialTokens: false)
    }
}
