import Foundation
import Autograd
import DeepSeek
import Data

/// Where a stage's token rows come from. Row `g` of the global batch sequence is a pure
/// function of (seed, g): the order does not depend on the parallel layout or on restarts.
package enum DataSource {
    case arithmetic(SyntheticArithmetic)
    /// A `deeptrain prepare` directory; the last `heldOut` windows are kept for evaluation.
    case shards(ShardLoader, heldOut: Int)

    /// `synthetic:arithmetic`, or a directory written by `deeptrain prepare`.
    package static func open(_ spec: String, vocab: Int) throws -> DataSource {
        switch spec {
        case "synthetic:arithmetic":
            guard vocab >= 256 else {
                throw RecipeError(file: "recipe", line: nil, column: nil, path: "data",
                                  message: "synthetic:arithmetic is byte-level and needs vocab_size ≥ 256 (the model has \(vocab))")
            }
            return .arithmetic(SyntheticArithmetic())
        case "synthetic:arithmetic-chat", "synthetic:arithmetic-chat-off-by-one", "synthetic:arithmetic-prompts":
            throw RecipeError(file: "recipe", line: nil, column: nil, path: "data",
                              message: "\(spec) is \(spec.contains("chat") ? "SFT chat data" : "GRPO prompt data"); a pretrain stage reads synthetic:arithmetic or a `deeptrain prepare` directory (sft and grpo stages read chat and prompt data)")
        default:
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: spec, isDirectory: &isDir), isDir.boolValue {
                let loader: ShardLoader
                do { loader = try ShardLoader(dir: spec) } catch let e as TokenizerError {
                    throw RecipeError(file: "recipe", line: nil, column: nil, path: "data", message: e.description)
                }
                guard loader.index.vocabSize <= vocab else {
                    throw RecipeError(file: "recipe", line: nil, column: nil, path: "data",
                                      message: "\(spec) was tokenized with \(loader.index.vocabSize) tokens; the model's vocab_size is \(vocab)")
                }
                return .shards(loader, heldOut: 16)
            }
            let what = FileManager.default.fileExists(atPath: spec) ? "is a file, not a `deeptrain prepare` directory"
                : spec.hasPrefix("synthetic:") ? "is not a built-in task" : "does not exist"
            throw RecipeError(file: "recipe", line: nil, column: nil, path: "data",
                              message: "\"\(spec)\" \(what); expected synthetic:arithmetic or a `deeptrain prepare` directory")
        }
    }

    /// `count` rows of `length` tokens starting at global row `first`.
    package func rows(first: Int, count: Int, length: Int, seed: UInt64) -> [Int] {
        switch self {
        case .arithmetic(let task):
            var out: [Int] = []
            out.reserveCapacity(count * length)
            for g in first..<(first + count) {
                // Each row reads its own range of the example stream (an example is ≥ 6 bytes).
                out += task.trainTokens(seed: seed, start: UInt64(g) * UInt64(length / 6 + 2), count: length).tokens
            }
            return out
        case .shards(let loader, let held):
            return loader.rows(first: first, count: count, length: length, seed: seed, heldOut: held)
        }
    }

    package func heldOutRows(first: Int, count: Int, length: Int) -> [Int] {
        switch self {
        case .arithmetic(let task):
            let stream = task.heldOutTokens
            var out: [Int] = []
            for g in first..<(first + count) {
                let start = (g * length) % Swift.max(stream.count - length, 1)
                out += stream[start..<(start + length)]
            }
            return out
        case .shards(let loader, let held):
            return loader.heldOutRows(first: first, count: count, length: length, heldOut: held)
        }
    }

    /// Held-out problems for the exact-match accuracy: each prompt's tokens, its answer's
    /// text, the stop token and how many tokens the answer may take; nil: no such problems.
    package func exactMatchProblems(samples: Int) -> (problems: [(prompt: [Int], answer: String)], stop: Int, maxNew: Int)? {
        switch self {
        case .arithmetic(let task):
            let problems = task.heldOutPairs.prefix(samples).map { a, b in
                ([SyntheticArithmetic.eos] + Array(SyntheticArithmetic.prompt(a, b).utf8).map(Int.init), String(a + b))
            }
            return (problems, SyntheticArithmetic.eos, 5)
        case .shards:
            return nil
        }
    }

    /// Whether a completion's tokens (bytes) spell `answer`.
    package static func matches(_ tokens: [Int], _ answer: String) -> Bool {
        String(decoding: tokens.map { UInt8(clamping: $0) }, as: UTF8.self) == answer
    }

    /// Greedy exact-match accuracy on held-out problems, in this process: (accuracy, samples).
    package func exactMatch(model: DeepSeekForCausalLM, samples: Int) -> (Double, Int)? {
        guard let (problems, stop, maxNew) = exactMatchProblems(samples: samples) else { return nil }
        let correct = problems.filter { p in DataSource.matches(model.generate(prompt: p.prompt, maxNew: maxNew, stop: [stop]).tokens, p.answer) }.count
        return (Double(correct) / Double(Swift.max(problems.count, 1)), problems.count)
    }
}
