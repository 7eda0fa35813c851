import Foundation
import Autograd
import Data

/// `deeptrain bench tokenize`: encoding speed of a tokenizer.json on a text file, on one
/// thread, the way Hugging Face `tokenizers`' `encode(text)` is measured against it
/// (docs/data.md): the whole file as one text; the first encode on a fresh tokenizer (an empty
/// word cache) and the best of the repeats after it.
package enum TokenizeBenchmark {
    package struct Report: Codable, Sendable {
        package var benchmark = "tokenize"
        package var blasKernel = KernelSelection.current.kernel
        package let tokenizer: String
        package let corpus: String
        package let corpusBytes: Int
        package let tokens: Int
        package let loadSeconds: Double
        package let coldTokensPerSecond: Double
        package let tokensPerSecond: Double
        package let megabytesPerSecond: Double
        package let repeats: Int
        package let decodeRoundTrip: Bool

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

    package static func run(tokenizer path: String, corpus: String, repeats: Int) throws -> Report {
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
