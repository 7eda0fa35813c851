import Foundation
@_exported import Tokenizers
@_exported import Jinja
import FileSafety

/// `deeptrain prepare`: text files or JSONL (`{"text": ...}` per line) → tokenizer + token
/// shards, streaming line by line, reporting progress.
package enum Prepare {
    package struct Options {
        package var inputs: [String]
        package var output: String
        /// An existing tokenizer.json; nil trains one on the inputs.
        package var tokenizer: String?
        package var vocabSize = 4096
        package var eos = "<|eos|>"
        package var shardTokens = 1 << 24
        /// More special tokens for a trained tokenizer (a chat template's markers).
        package var specialTokens: [String] = []
        /// A chat template (Jinja) to ship beside the tokenizer: the output then is a tokenizer
        /// directory as transformers reads it (chat_template.jinja, tokenizer_config.json).
        package var chatTemplate: String? = nil
        package var bos: String? = nil
        package init(inputs: [String], output: String, tokenizer: String? = nil) {
            self.inputs = inputs
            self.output = output
            self.tokenizer = tokenizer
        }
    }

    /// Calls `body` with each document: a JSONL line's "text", or a whole plain-text file.
    static func documents(_ path: String, _ body: (String) throws -> Void) throws {
        guard FileManager.default.fileExists(atPath: path) else { throw TokenizerError(source: path, message: "does not exist") }
        // Memory-mapped and walked line by line: a corpus larger than memory streams through.
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) else {
            throw TokenizerError(source: path, message: "cannot be read")
        }
        guard path.hasSuffix(".jsonl") else {
            try body(String(decoding: data, as: UTF8.self))
            return
        }
        var lineNo = 0
        var start = data.startIndex
        while start < data.endIndex {
            let end = data[start...].firstIndex(of: UInt8(ascii: "\n")) ?? data.endIndex
            let line = data[start..<end]
            start = end < data.endIndex ? data.index(after: end) : end
            lineNo += 1
            if line.allSatisfy({ $0 == 32 || $0 == 9 || $0 == 13 }) { continue }
            guard line.count <= JSONLines.lineBytes else {
                throw TokenizerError(source: "\(path):\(lineNo)", message: "is \(line.count) bytes; a JSONL line may be at most \(JSONLines.lineBytes)")
            }
            guard let obj = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any] else {
                throw TokenizerError(source: "\(path):\(lineNo)", message: "is not a JSON object")
            }
            guard let text = obj["text"] as? String else {
                throw TokenizerError(source: "\(path):\(lineNo)", message: "has no string \"text\" field (keys: \(obj.keys.sorted().joined(separator: ", ")))")
            }
            try body(text)
        }
    }

    @discardableResult
    package static func run(_ o: Options, progress: (Int, Int, Int) -> Void = { _, _, _ in }) throws -> ShardIndex {
        for p in o.inputs where !FileManager.default.fileExists(atPath: p) {
            throw TokenizerError(source: p, message: "does not exist")
        }
        let tok: Tokenizer
        if let t = o.tokenizer {
            tok = try Tokenizer(path: t)
        } else {
            var texts: [String] = []
            var bytes = 0
            // Train on up to 8 MB of the input: enough for merge statistics, bounded in time.
            for p in o.inputs where bytes < 8 << 20 {
                try documents(p) { t in
                    if bytes < 8 << 20 { texts.append(t); bytes += t.utf8.count }
                }
            }
            var specials = [o.eos] + o.specialTokens
            if let b = o.bos, !specials.contains(b) { specials.append(b) }
            var seen = Set<String>()
            tok = try Tokenizer.train(texts: texts, vocabSize: o.vocabSize, specialTokens: specials.filter { seen.insert($0).inserted })
        }
        var templateText: String? = nil
        if let t = o.chatTemplate {
            let data: Data
            do { data = try readBoundedFile(t, limit: ChatTokenizer.templateBytes, what: "a chat template") } catch let e as BoundedFileError {
                throw TokenizerError(source: t, message: e.message)
            }
            templateText = String(decoding: data, as: UTF8.self)
            _ = try ChatTemplate(source: templateText!, origin: t)   // a syntax error stops here, before any output
            if let b = o.bos, tok.id(of: b) == nil {
                throw TokenizerError(source: o.tokenizer ?? "tokenizer", message: "has no bos token \"\(b)\"")
            }
        }
        guard let eos = tok.id(of: o.eos) else {
            throw TokenizerError(source: o.tokenizer ?? "tokenizer", message: "has no end-of-sequence token \"\(o.eos)\" (give --eos)")
        }
        var index: ShardIndex? = nil
        try AtomicDirectory.write(o.output, ownsName: Self.writesName) { tmpDir in
            let w = try ShardWriter(dir: tmpDir, tokenizer: tok, eos: eos, shardTokens: o.shardTokens)
            for (i, p) in o.inputs.enumerated() {
                try documents(p) { text in
                    try w.add(text)
                    if w.documents % 1000 == 0 { progress(i, w.documents, w.tokens) }
                }
                progress(i + 1, w.documents, w.tokens)
            }
            index = try w.finish()
            if let templateText {
                try Data(templateText.utf8).write(to: URL(fileURLWithPath: (tmpDir as NSString).appendingPathComponent("chat_template.jinja")))
                var config: [String: Any] = ["eos_token": o.eos, "tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": false,
                                             "model_max_length": 1_000_000]
                if let b = o.bos { config["bos_token"] = b }
                try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
                    .write(to: URL(fileURLWithPath: (tmpDir as NSString).appendingPathComponent("tokenizer_config.json")))
            }
        }
        return index!
    }

    /// Names `prepare` writes: an existing output directory holding only these is replaced.
    static func writesName(_ name: String) -> Bool {
        ["index.json", "tokenizer.json", "chat_template.jinja", "tokenizer_config.json"].contains(name)
            || (name.hasPrefix("shard-") && name.hasSuffix(".bin"))
    }
}
