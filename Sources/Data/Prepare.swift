import Foundation

/// `deeptrain prepare`: text files or JSONL (`{"text": ...}` per line) → tokenizer + token
/// shards, streaming line by line, reporting progress.
public enum Prepare {
    public struct Options {
        public var inputs: [String]
        public var output: String
        /// An existing tokenizer.json; nil trains one on the inputs.
        public var tokenizer: String?
        public var vocabSize = 4096
        public var eos = "<|eos|>"
        public var shardTokens = 1 << 24
        public init(inputs: [String], output: String, tokenizer: String? = nil) {
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
    public static func run(_ o: Options, progress: (Int, Int, Int) -> Void = { _, _, _ in }) throws -> ShardIndex {
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
            tok = try Tokenizer.train(texts: texts, vocabSize: o.vocabSize, specialTokens: [o.eos])
        }
        guard let eos = tok.id(of: o.eos) else {
            throw TokenizerError(source: o.tokenizer ?? "tokenizer", message: "has no end-of-sequence token \"\(o.eos)\" (give --eos)")
        }
        let tmpDir = o.output + ".tmp"
        try? FileManager.default.removeItem(atPath: tmpDir)
        do {
            let w = try ShardWriter(dir: tmpDir, tokenizer: tok, eos: eos, shardTokens: o.shardTokens)
            for (i, p) in o.inputs.enumerated() {
                try documents(p) { text in
                    try w.add(text)
                    if w.documents % 1000 == 0 { progress(i, w.documents, w.tokens) }
                }
                progress(i + 1, w.documents, w.tokens)
            }
            let index = try w.finish()
            try? FileManager.default.removeItem(atPath: o.output)
            try FileManager.default.moveItem(atPath: tmpDir, toPath: o.output)
            return index
        } catch {
            try? FileManager.default.removeItem(atPath: tmpDir)
            throw error
        }
    }
}
