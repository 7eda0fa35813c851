import Foundation

/// Reading and writing Hugging Face `tokenizer.json` for byte-level BPE.
extension BPETokenizer {
    public convenience init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TokenizerError(source: path, message: "cannot be read")
        }
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw TokenizerError(source: path, message: "is not a JSON object (expected a Hugging Face tokenizer.json)")
        }
        guard let model = json["model"] as? [String: Any], (model["type"] as? String) == "BPE",
              let vocab = model["vocab"] as? [String: Int], let rawMerges = model["merges"] as? [Any] else {
            throw TokenizerError(source: path, message: "model: expected a BPE model with vocab and merges")
        }
        var merges: [(String, String)] = []
        for (i, m) in rawMerges.enumerated() {
            if let pair = m as? [String], pair.count == 2 {
                merges.append((pair[0], pair[1]))
            } else if let s = m as? String, let sp = s.firstIndex(of: " ") {
                merges.append((String(s[..<sp]), String(s[s.index(after: sp)...])))
            } else {
                throw TokenizerError(source: path, message: "model.merges[\(i)]: expected \"a b\" or [\"a\", \"b\"]")
            }
        }
        var added: [AddedToken] = []
        for a in (json["added_tokens"] as? [[String: Any]]) ?? [] {
            guard let content = a["content"] as? String, let id = a["id"] as? Int else {
                throw TokenizerError(source: path, message: "added_tokens: each needs content and id")
            }
            added.append(AddedToken(content: content, id: id, special: (a["special"] as? Bool) ?? false))
        }
        var splits: [(String, Behavior)] = []
        var prefixSpace = false
        func visit(_ p: [String: Any], at where_: String) throws {
            switch p["type"] as? String {
            case "Sequence":
                for (i, q) in ((p["pretokenizers"] as? [[String: Any]]) ?? []).enumerated() { try visit(q, at: "\(where_).pretokenizers[\(i)]") }
            case "Split":
                guard let pat = (p["pattern"] as? [String: Any])?["Regex"] as? String ?? (p["pattern"] as? [String: Any])?["String"]
                    .map({ NSRegularExpression.escapedPattern(for: $0 as! String) }) else {
                    throw TokenizerError(source: path, message: "\(where_).pattern: expected {\"Regex\": ...} or {\"String\": ...}")
                }
                let b = (p["behavior"] as? String) ?? "Isolated"
                guard let behavior = Behavior(rawValue: b), (p["invert"] as? Bool) != true else {
                    throw TokenizerError(source: path, message: "\(where_): behavior \(b) (invert \(p["invert"] ?? false)) is not supported; supported: Isolated, Removed, invert false")
                }
                splits.append((pat, behavior))
            case "ByteLevel":
                prefixSpace = (p["add_prefix_space"] as? Bool) ?? false
                if (p["use_regex"] as? Bool) ?? true {
                    // ByteLevel's own GPT-2 split.
                    splits.append((#"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#, .isolated))
                }
            case let other:
                throw TokenizerError(source: path, message: "\(where_): pre-tokenizer \(other ?? "null") is not supported; supported: Sequence, Split, ByteLevel")
            }
        }
        if let pre = json["pre_tokenizer"] as? [String: Any] { try visit(pre, at: "pre_tokenizer") }
        if let norm = json["normalizer"] as? [String: Any] {
            throw TokenizerError(source: path, message: "normalizer \(norm["type"] ?? "?") is not supported (byte-level BPE tokenizers have none)")
        }
        try self.init(vocab: vocab, merges: merges, added: added, splits: splits, addPrefixSpace: prefixSpace, source: path)
    }

    /// Writes a `tokenizer.json` that Hugging Face `tokenizers` loads.
    public func save(_ path: String) throws {
        let pre: [[String: Any]] = splits.map { p in
            ["type": "Split", "pattern": ["Regex": p.pattern], "behavior": p.behavior.rawValue, "invert": false]
        } + [["type": "ByteLevel", "add_prefix_space": addPrefixSpace, "trim_offsets": true, "use_regex": false]]
        let json: [String: Any] = [
            "version": "1.0",
            "truncation": NSNull(), "padding": NSNull(), "normalizer": NSNull(), "post_processor": NSNull(),
            "added_tokens": added.sorted { $0.id < $1.id }.map {
                ["id": $0.id, "content": $0.content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": $0.special]
            },
            "pre_tokenizer": ["type": "Sequence", "pretokenizers": pre],
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": ["type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
                      "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": merges.map { [$0.0, $0.1] }],
        ]
        let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
        let tmp = path + ".tmp"
        try data.write(to: URL(fileURLWithPath: tmp))
        guard rename(tmp, path) == 0 else { throw TokenizerError(source: path, message: "cannot rename \(tmp) into place") }
    }
}
