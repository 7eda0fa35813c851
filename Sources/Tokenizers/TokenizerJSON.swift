import Foundation

/// Reading tokenizer.json: every component is checked against what tokenizers accepts, and one
/// this pipeline does not implement stops with its JSON path and type.
extension Tokenizer {
    /// Reads `path`: a tokenizer.json, or a directory holding one, refusing files past `bounds`.
    package convenience init(path: String, bounds: TokenizerBounds = .standard) throws {
        var isDir: ObjCBool = false
        var file = path
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            file = (path as NSString).appendingPathComponent("tokenizer.json")
            guard FileManager.default.fileExists(atPath: file) else {
                throw TokenizerError(source: path, message: "is a directory without tokenizer.json")
            }
        }
        // Refused before reading: the size bound protects memory, not just the parser.
        if let size = (try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? Int, size > bounds.fileBytes {
            throw TokenizerError(source: file, message: "is \(size) bytes, more than the \(bounds.fileBytes) a tokenizer.json may have")
        }
        guard let data = FileManager.default.contents(atPath: file) else {
            throw TokenizerError(source: file, message: "cannot be read")
        }
        try self.init(json: data, source: file, bounds: bounds)
    }

    package convenience init(json data: Data, source: String, bounds: TokenizerBounds = .standard) throws {
        if data.count > bounds.fileBytes {
            throw TokenizerError(source: source, message: "is \(data.count) bytes, more than the \(bounds.fileBytes) a tokenizer.json may have")
        }
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw TokenizerError(source: source, message: "is not a JSON object (expected a Hugging Face tokenizer.json)")
        }
        let reader = TokenizerJSONReader(source: source, bounds: bounds)
        let model = try reader.model(json["model"])
        let normalizer = try reader.optional(json["normalizer"]) { try reader.normalizer($0, at: "normalizer") }
        let pre = try reader.optional(json["pre_tokenizer"]) { try reader.preTokenizer($0, at: "pre_tokenizer") }
        let added = try reader.addedTokens(json["added_tokens"])
        let post = try reader.optional(json["post_processor"]) { try reader.postProcessor($0, at: "post_processor") }
        let decoder = try reader.optional(json["decoder"]) { try reader.decoder($0, at: "decoder") }
        try self.init(model: model, normalizer: normalizer, preTokenizer: pre, postProcessor: post, decoder: decoder,
                      added: added, json: data, source: source)
    }

    /// Writes the tokenizer.json this tokenizer was read from (atomically).
    package func save(_ path: String) throws {
        let tmp = path + ".tmp"
        do { try json.write(to: URL(fileURLWithPath: tmp)) } catch {
            throw TokenizerError(source: path, message: "cannot be written: \(error.localizedDescription)")
        }
        guard rename(tmp, path) == 0 else { throw TokenizerError(source: path, message: "cannot rename \(tmp) into place") }
    }
}

struct TokenizerJSONReader {
    let source: String
    let bounds: TokenizerBounds

    func fail(_ at: String, _ message: String) -> TokenizerError { TokenizerError(source: source, message: "\(at): \(message)") }

    func optional<T>(_ v: Any?, _ read: ([String: Any]) throws -> T) throws -> T? {
        guard let v, !(v is NSNull) else { return nil }
        guard let d = v as? [String: Any] else { throw fail("component", "expected an object or null") }
        return try read(d)
    }

    func object(_ v: Any?, at: String) throws -> [String: Any] {
        guard let d = v as? [String: Any] else { throw fail(at, "expected an object") }
        return d
    }

    func type(_ d: [String: Any], at: String) throws -> String {
        guard let t = d["type"] as? String else { throw fail("\(at).type", "missing (expected a component type name)") }
        return t
    }

    func bool(_ d: [String: Any], _ key: String, default v: Bool) -> Bool { (d[key] as? Bool) ?? v }

    func string(_ d: [String: Any], _ key: String, at: String) throws -> String {
        guard let s = d[key] as? String else { throw fail("\(at).\(key)", "expected a string") }
        return s
    }

    func scalar(_ d: [String: Any], _ key: String, at: String) throws -> UInt32 {
        let s = try string(d, key, at: at)
        guard s.unicodeScalars.count == 1 else { throw fail("\(at).\(key)", "expected one character, got \(s.debugDescription)") }
        return s.unicodeScalars.first!.value
    }

    /// Refuses a list or object with more than `limit` entries (nil: not a list; the caller says so).
    func bound(_ count: Int?, _ limit: Int, _ at: String, _ what: String) throws {
        if let count, count > limit { throw fail(at, "has \(count) \(what), more than the \(limit) allowed") }
    }

    func unsupported(_ kind: String, _ t: String, at: String, _ supported: String) -> TokenizerError {
        fail(at, "\(kind) type \(t) is not supported (supported: \(supported))")
    }

    func pattern(_ v: Any?, at: String) throws -> SplitPattern {
        guard let d = v as? [String: Any] else { throw fail(at, "expected {\"String\": ...} or {\"Regex\": ...}") }
        for key in ["String", "Regex"] {
            if let p = d[key] as? String, p.unicodeScalars.count > bounds.patternLength {
                throw fail("\(at).\(key)", "is \(p.unicodeScalars.count) characters long, more than the \(bounds.patternLength) allowed")
            }
        }
        if let s = d["String"] as? String { return .string([UInt32](scalarsOf: s)) }
        if let r = d["Regex"] as? String {
            do { return .regex(try TokenRegex(r, origin: "\(at).Regex")) } catch { throw fail("\(at).Regex", "\(error)") }
        }
        throw fail(at, "expected {\"String\": ...} or {\"Regex\": ...}, got keys \(d.keys.sorted())")
    }

    // MARK: model

    func model(_ v: Any?) throws -> BPEModel {
        let d = try object(v, at: "model")
        let t = (d["type"] as? String) ?? "BPE"
        guard t == "BPE" else { throw unsupported("model", t, at: "model.type", "BPE") }
        try bound((d["vocab"] as? [String: Any])?.count, bounds.vocabulary, "model.vocab", "entries")
        try bound((d["merges"] as? [Any])?.count, bounds.merges, "model.merges", "merges")
        guard let vocab = d["vocab"] as? [String: Int] else { throw fail("model.vocab", "expected an object of token → id") }
        if let (token, id) = vocab.first(where: { !(0..<bounds.idLimit).contains($0.value) }) {
            throw fail("model.vocab", "the id \(id) of \(token.debugDescription) is outside 0..<\(bounds.idLimit)")
        }
        guard let raw = d["merges"] as? [Any] else { throw fail("model.merges", "expected a list") }
        var merges: [(String, String)] = []
        merges.reserveCapacity(raw.count)
        for (i, m) in raw.enumerated() {
            if let pair = m as? [String], pair.count == 2 {
                merges.append((pair[0], pair[1]))
            } else if let s = m as? String, let sp = s.firstIndex(of: " ") {
                merges.append((String(s[..<sp]), String(s[s.index(after: sp)...])))
            } else {
                throw fail("model.merges[\(i)]", "expected \"a b\" or [\"a\", \"b\"]")
            }
        }
        if let dropout = d["dropout"] as? Double, dropout > 0 {
            throw fail("model.dropout", "BPE dropout \(dropout) is not supported (training-time sampling; expected null or 0)")
        }
        var o = BPEModel.Options()
        o.unkToken = d["unk_token"] as? String
        o.continuingSubwordPrefix = d["continuing_subword_prefix"] as? String
        o.endOfWordSuffix = d["end_of_word_suffix"] as? String
        o.fuseUnk = bool(d, "fuse_unk", default: false)
        o.byteFallback = bool(d, "byte_fallback", default: false)
        o.ignoreMerges = bool(d, "ignore_merges", default: false)
        return try BPEModel(vocab: vocab, merges: merges, options: o, source: source)
    }

    // MARK: added tokens

    func addedTokens(_ v: Any?) throws -> [AddedToken] {
        guard let v, !(v is NSNull) else { return [] }
        try bound((v as? [Any])?.count, bounds.addedTokens, "added_tokens", "tokens")
        guard let list = v as? [[String: Any]] else { throw fail("added_tokens", "expected a list of objects") }
        var characters = 0
        return try list.enumerated().map { i, a in
            guard let content = a["content"] as? String, let id = a["id"] as? Int else {
                throw fail("added_tokens[\(i)]", "needs a string content and an integer id")
            }
            let length = content.unicodeScalars.count
            if length > bounds.addedTokenLength {
                throw fail("added_tokens[\(i)].content", "is \(length) characters long, more than the \(bounds.addedTokenLength) allowed")
            }
            characters += length
            if characters > bounds.addedTokenCharacters {
                throw fail("added_tokens", "have more than the \(bounds.addedTokenCharacters) characters allowed in all")
            }
            guard (0..<bounds.idLimit).contains(id) else {
                throw fail("added_tokens[\(i)].id", "\(id) is outside 0..<\(bounds.idLimit)")
            }
            let special = bool(a, "special", default: false)
            return AddedToken(content: content, id: id, special: special, singleWord: bool(a, "single_word", default: false),
                              lstrip: bool(a, "lstrip", default: false), rstrip: bool(a, "rstrip", default: false),
                              normalized: bool(a, "normalized", default: !special))
        }
    }

    // MARK: normalizers

    static let normalizers = "Sequence, NFC, NFD, NFKC, NFKD, Lowercase, Strip, StripAccents, Replace, Prepend, ByteLevel"

    func normalizer(_ d: [String: Any], at: String) throws -> Normalizer {
        let t = try type(d, at: at)
        switch t {
        case "Sequence":
            guard let list = d["normalizers"] as? [[String: Any]] else { throw fail("\(at).normalizers", "expected a list") }
            return .sequence(try list.enumerated().map { try normalizer($1, at: "\(at).normalizers[\($0)]") })
        case "NFC": return .nfc
        case "NFD": return .nfd
        case "NFKC": return .nfkc
        case "NFKD": return .nfkd
        case "Lowercase": return .lowercase
        case "Strip": return .strip(left: bool(d, "strip_left", default: true), right: bool(d, "strip_right", default: true))
        case "StripAccents": return .stripAccents
        case "Replace":
            return .replace(try pattern(d["pattern"], at: "\(at).pattern"), content: [UInt32](scalarsOf: try string(d, "content", at: at)))
        case "Prepend": return .prepend([UInt32](scalarsOf: try string(d, "prepend", at: at)))
        case "ByteLevel": return .byteLevel
        default: throw unsupported("normalizer", t, at: at, Self.normalizers)
        }
    }

    // MARK: pre-tokenizers

    static let preTokenizers = "Sequence, Split, ByteLevel, Digits, Metaspace, Whitespace, WhitespaceSplit, Punctuation, BertPreTokenizer"

    func behavior(_ d: [String: Any], at: String, default v: SplitBehavior) throws -> SplitBehavior {
        guard let raw = d["behavior"] else { return v }
        guard let s = raw as? String, let b = SplitBehavior(rawValue: s) else {
            throw fail("\(at).behavior", "expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous, got \(raw)")
        }
        return b
    }

    func prependScheme(_ d: [String: Any], at: String) throws -> PreTokenizer.PrependScheme {
        if let s = d["prepend_scheme"] as? String {
            guard let p = PreTokenizer.PrependScheme(rawValue: s) else {
                throw fail("\(at).prepend_scheme", "expected always, first or never, got \(s)")
            }
            return p
        }
        // Files older than prepend_scheme say add_prefix_space.
        return bool(d, "add_prefix_space", default: true) ? .always : .never
    }

    func preTokenizer(_ d: [String: Any], at: String) throws -> PreTokenizer {
        let t = try type(d, at: at)
        switch t {
        case "Sequence":
            guard let list = d["pretokenizers"] as? [[String: Any]] else { throw fail("\(at).pretokenizers", "expected a list") }
            return .sequence(try list.enumerated().map { try preTokenizer($1, at: "\(at).pretokenizers[\($0)]") })
        case "Split":
            return .split(try pattern(d["pattern"], at: "\(at).pattern"), try behavior(d, at: at, default: .isolated),
                          invert: bool(d, "invert", default: false))
        case "ByteLevel":
            return .byteLevel(addPrefixSpace: bool(d, "add_prefix_space", default: true), useRegex: bool(d, "use_regex", default: true))
        case "Digits": return .digits(individual: bool(d, "individual_digits", default: false))
        case "Metaspace":
            return .metaspace(replacement: try scalar(d, "replacement", at: at), prependScheme: try prependScheme(d, at: at),
                              split: bool(d, "split", default: true))
        case "Whitespace": return .whitespace
        case "WhitespaceSplit": return .whitespaceSplit
        case "Punctuation": return .punctuation(try behavior(d, at: at, default: .isolated))
        case "BertPreTokenizer": return .bert
        default: throw unsupported("pre-tokenizer", t, at: at, Self.preTokenizers)
        }
    }

    // MARK: post-processors

    func postProcessor(_ d: [String: Any], at: String) throws -> PostProcessor {
        let t = try type(d, at: at)
        switch t {
        case "ByteLevel": return .byteLevel
        case "Sequence":
            guard let list = d["processors"] as? [[String: Any]] else { throw fail("\(at).processors", "expected a list") }
            return .sequence(try list.enumerated().map { try postProcessor($1, at: "\(at).processors[\($0)]") })
        case "TemplateProcessing":
            guard let single = d["single"] as? [[String: Any]] else { throw fail("\(at).single", "expected a list of pieces") }
            let specials = (d["special_tokens"] as? [String: [String: Any]]) ?? [:]
            return .template(try single.enumerated().map { i, piece in
                if piece["Sequence"] != nil { return nil }
                guard let tok = piece["SpecialToken"] as? [String: Any], let name = tok["id"] as? String else {
                    throw fail("\(at).single[\(i)]", "expected {\"Sequence\": ...} or {\"SpecialToken\": {\"id\": ...}}")
                }
                guard let ids = specials[name]?["ids"] as? [Int] else {
                    throw fail("\(at).special_tokens", "has no ids for \(name.debugDescription), which single[\(i)] uses")
                }
                return ids
            })
        case "BertProcessing", "RobertaProcessing":
            guard let cls = d["cls"] as? [Any], let sep = d["sep"] as? [Any], let c = cls.last as? Int, let s = sep.last as? Int else {
                throw fail(at, "expected cls and sep as [token, id]")
            }
            return .template([[c], nil, [s]])
        default:
            throw unsupported("post-processor", t, at: at, "ByteLevel, TemplateProcessing, Sequence, BertProcessing, RobertaProcessing")
        }
    }

    // MARK: decoders

    func decoder(_ d: [String: Any], at: String) throws -> Decoder {
        let t = try type(d, at: at)
        switch t {
        case "ByteLevel": return .byteLevel
        case "Metaspace": return .metaspace(replacement: try scalar(d, "replacement", at: at), prependScheme: try prependScheme(d, at: at))
        case "Replace":
            return .replace(try pattern(d["pattern"], at: "\(at).pattern"), content: [UInt32](scalarsOf: try string(d, "content", at: at)))
        case "ByteFallback": return .byteFallback
        case "Fuse": return .fuse
        case "Strip":
            guard let content = (d["content"] as? String)?.unicodeScalars.first?.value else { throw fail("\(at).content", "expected a character") }
            return .strip(content: content, start: (d["start"] as? Int) ?? 0, stop: (d["stop"] as? Int) ?? 0)
        case "BPEDecoder": return .bpeSuffix((d["suffix"] as? String) ?? "</w>")
        case "Sequence":
            guard let list = d["decoders"] as? [[String: Any]] else { throw fail("\(at).decoders", "expected a list") }
            return .sequence(try list.enumerated().map { try decoder($1, at: "\(at).decoders[\($0)]") })
        default:
            throw unsupported("decoder", t, at: at, "ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, BPEDecoder, Sequence")
        }
    }
}
