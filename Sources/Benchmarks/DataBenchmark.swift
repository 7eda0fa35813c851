import Foundation
import Training
import Autograd
import Data
import DeepSeek

/// `deeptrain bench data`: tokens/s of `prepare` (tokenizing and writing shards) and of the
/// shard loader, against the training throughput of the tiny model they would feed.
package enum DataBenchmark {
    package struct Report: Codable, Sendable {
        package var benchmark = "data"
        package var blasKernel = KernelSelection.current.kernel
        package let corpusBytes: Int
        package let tokenizerTrainSeconds: Double
        package let prepareTokensPerSecond: Double
        package let loaderTokensPerSecond: Double
        package let trainTokensPerSecondTiny: Double
        package let loaderOverTrain: Double
        package let prepareOverTrain: Double

        enum CodingKeys: String, CodingKey {
            case benchmark
            case blasKernel = "blas_kernel"
            case corpusBytes = "corpus_bytes"
            case tokenizerTrainSeconds = "tokenizer_train_s"
            case prepareTokensPerSecond = "prepare_tokens_per_s"
            case loaderTokensPerSecond = "loader_tokens_per_s"
            case trainTokensPerSecondTiny = "train_tokens_per_s_tiny"
            case loaderOverTrain = "loader_over_train"
            case prepareOverTrain = "prepare_over_train"
        }
    }

    package static func run(megabytes: Int = 4) throws -> Report {
        Threads.set(2)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("dt-bench-data-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A corpus of arithmetic lines and prose-like text as JSONL.
        let task = SyntheticArithmetic()
        let words = "the of model expert token router attention latent cache training data shard loader tokenizer".split(separator: " ")
        var lines: [String] = []
        var bytes = 0, i: UInt64 = 0
        while bytes < megabytes << 20 {
            let (a, b) = task.trainPair(seed: 1, index: i)
            let prose = (0..<12).map { words[Int((i &* 31 &+ UInt64($0) &* 7) % UInt64(words.count))] }.joined(separator: " ")
            let text = SyntheticArithmetic.text(a, b) + prose
            let line = String(decoding: try JSONSerialization.data(withJSONObject: ["text": text]), as: UTF8.self)
            lines.append(line)
            bytes += line.utf8.count + 1
            i += 1
        }
        let corpus = (dir as NSString).appendingPathComponent("corpus.jsonl")
        try (lines.joined(separator: "\n") + "\n").write(toFile: corpus, atomically: true, encoding: .utf8)

        let t0 = Date()
        let tok = try Tokenizer.train(texts: Array(lines.prefix(2000)), vocabSize: 512, specialTokens: ["<|eos|>"])
        let trainS = Date().timeIntervalSince(t0)
        let tokPath = (dir as NSString).appendingPathComponent("tok.json")
        try tok.save(tokPath)
        let t1 = Date()
        let index = try Prepare.run(Prepare.Options(inputs: [corpus], output: (dir as NSString).appendingPathComponent("shards"), tokenizer: tokPath))
        let prepareTPS = Double(index.tokens) / Date().timeIntervalSince(t1)

        let loader = try ShardLoader(dir: (dir as NSString).appendingPathComponent("shards"))
        let t2 = Date()
        var served = 0
        for g in 0..<200 {
            served += loader.rows(first: g * 32, count: 32, length: 65, seed: 1, heldOut: 16).count
        }
        let loaderTPS = Double(served) / Date().timeIntervalSince(t2)

        // What those tokens feed: the tiny model's training step at 32 × 64.
        let model = DeepSeekForCausalLM(.tiny, seed: 1, positions: 65)
        let trainer = SingleProcessMoETrainer(model: model)
        let rows = (0..<(32 * 65)).map { $0 % 256 }
        _ = try! trainer.step(rows: rows, batch: 32, length: 64, lr: 1e-4)
        let t3 = Date()
        for _ in 0..<5 { _ = try! trainer.step(rows: rows, batch: 32, length: 64, lr: 1e-4) }
        let trainTPS = Double(5 * 32 * 64) / Date().timeIntervalSince(t3)
        return Report(corpusBytes: bytes, tokenizerTrainSeconds: trainS, prepareTokensPerSecond: prepareTPS, loaderTokensPerSecond: loaderTPS,
                      trainTokensPerSecondTiny: trainTPS, loaderOverTrain: loaderTPS / trainTPS, prepareOverTrain: prepareTPS / trainTPS)
    }
}
