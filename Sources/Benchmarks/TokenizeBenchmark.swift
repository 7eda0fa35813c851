import Foundation
import Autograd
import Data

/// `deeptrain bench tokenize`: encoding speed of a tokenizer.json on a text file, on one
/// thread, the way Hugging Face `tokenizers`' `encode(text)` is measured against it
/// (docs/data.md): the whole file as one text; the first encode on a fresh tokenizer (an empty
/// word cache) and the best of the repeats after it.
public enum TokenizeBenchmark {
    public struct Report: Codable, Sendable {
        public var benchmark = "tokenize"
        public var blasKernel = KernelSelection.current.kernel
        public let tokenizer: String
        public let corpus: String
        public let corpusBytes: Int
        public let tokens: Int
        public let loadSeconds: Double
        public let coldTokensPerSecond: Double
        public let tokensPerSecond: Double
        public let megabytesPerSecond: Double
        public let repeats: Int
        public let decodeRoundTrip: Bool

        enum CodingKeys: String, CodingKey {
            case benchmark
            case blasKernel = "blas_kernel"
            case tokenizer
            case corpus
            case corpusBytes = "corpus_bytes"
            case tokens
            case loadSeconds = "load_s"
            case coldTokensPerSecond = "cold_tokens_per_s"
            case tokensPerSecond = "tokens_per_s"
            case megabytesPerSecond = "megabytes_per_s"
            case repeats
            case decodeRoundTrip = "decode_round_trip"
        }
    }

    public static func run(tokenizer path: String, corpus: String, repeats: Int) throws -> Report {
        guard let text = try? String(contentsOfFile: corpus, encoding: .utf8) else {
            throw TokenizerError(source: corpus, message: "cannot be read as UTF-8 text")
        }
        let t0 = Date()
        let tok = try Tokenizer(path: path)
        let load = Date().timeIntervalSince(t0)
        let t1 = Date()
        let ids = try tok.encode(text)
        let cold = Date().timeIntervalSince(t1)
        var best = Double.infinity
        for _ in 0..<repeats {
            let t = Date()
            let again = try tok.encode(text)
            best = min(best, Date().timeIntervalSince(t))
            precondition(again.count == ids.count)
        }
        return Report(tokenizer: path, corpus: corpus, corpusBytes: text.utf8.count, tokens: ids.count, loadSeconds: load,
                      coldTokensPerSecond: Double(ids.count) / cold, tokensPerSecond: Double(ids.count) / best,
                      megabytesPerSecond: Double(text.utf8.count) / best / 1e6, repeats: repeats,
                      decodeRoundTrip: try tok.decode(ids) == text)
    }
}
