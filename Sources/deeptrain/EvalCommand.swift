import ArgumentParser
import Foundation
import Autograd
import DeepSeek
import Checkpoint
import Training
import Data

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Held-out loss and task accuracy of a checkpoint.")

    @Argument(help: "A DeepTrain .h5 checkpoint or a Hugging Face directory.") var checkpoint: String
    @Option(help: "Data source.") var data = "synthetic:arithmetic"
    @Option(help: "Tokens per sequence.") var seqLen = 64
    @Option(help: "Held-out batches of 16 sequences for the loss.") var batches = 4
    @Option(help: "Held-out problems for exact match.") var samples = 200
    @Flag(help: "Print JSON.") var json = false
    @Flag(help: "--data is a chat JSONL: the loss on its assistant tokens under the chat template, and how often greedy decoding of each last assistant turn gives its text exactly.")
    var chat = false
    @Option(help: "The tokenizer for --chat (default: the model directory's, or the one stored in the checkpoint).") var tokenizer: String?

    func runChat() throws {
        let tok = try loadChatTokenizer(checkpoint: checkpoint, tokenizer: tokenizer)
        guard tok.template != nil, tok.eosId != nil else { throw fail("\(tokenizer ?? checkpoint): --chat needs a chat template and an eos_token") }
        let spec = self.data
        let data = try PostTrainingData.open(spec, form: .conversations, format: .template(tok))
        let model = try loadModel(checkpoint, positions: 512 + 32, mtp: false)
        guard tok.tokenizer.vocabularySize <= model.config.vocabSize else {
            throw fail("the tokenizer has \(tok.tokenizer.vocabularySize) ids, more than the model's vocab_size \(model.config.vocabSize)")
        }
        let n = Swift.min(samples, data.count ?? 0)
        let (loss, exact, tokens) = try withNoGrad { () throws -> (Double, Double, Int) in
            var nll = 0.0, count = 0, hits = 0
            for g in 0..<n {
                let r = PostTrainingData.sftRow(data.renderedConversation(g, seed: 0), length: seqLen, pad: data.format.pad)
                let k = r.targets.filter { $0 != -100 }.count
                guard k > 0 else { continue }
                let out = model.forward(r.inputs, batch: 1, length: seqLen)
                nll += Double(out.logits.reshape([seqLen, model.config.vocabSize]).crossEntropy(targets: r.targets).item) * Double(k)
                count += k
                let p = data.prompt(g, seed: 0)
                if let ids = try? data.format.prompt(p) {
                    let gen = model.generate(prompt: ids, maxNew: 32, stop: Set(data.format.stop))
                    if try data.format.text(gen.tokens).trimmingCharacters(in: .whitespacesAndNewlines) == p.answer.trimmingCharacters(in: .whitespacesAndNewlines) { hits += 1 }
                }
            }
            return (nll / Double(Swift.max(count, 1)), Double(hits) / Double(Swift.max(n, 1)), count)
        }
        if json {
            print(jsonString(ChatReport(checkpoint: checkpoint, data: data.spec, assistantLoss: loss, assistantTokens: tokens,
                                        exactMatch: exact, conversations: n)))
        } else {
            print(String(format: "assistant-token loss %.4f nats/token over %d tokens, exact match %.1f%% of %d conversations", loss, tokens, 100 * exact, n))
        }
    }

    func run() throws {
        if chat { return try runChat() }
        let model = try loadModel(checkpoint, positions: seqLen + 8, mtp: false)
        let source: DataSource
        do { source = try DataSource.open(data, vocab: model.config.vocabSize) } catch let e as RecipeError { throw fail("--data: \(e.message)") }
        let (loss, acc) = withNoGrad { () -> (Double, (Double, Int)?) in
            var total = 0.0
            for i in 0..<batches {
                let rows = source.heldOutRows(first: i * 16, count: 16, length: seqLen + 1)
                var ids: [Int] = [], targets: [Int] = []
                for r in 0..<16 {
                    ids += rows[(r * (seqLen + 1))..<(r * (seqLen + 1) + seqLen)]
                    targets += rows[(r * (seqLen + 1) + 1)..<((r + 1) * (seqLen + 1))]
                }
                let out = model.forward(ids, batch: 16, length: seqLen)
                total += Double(out.logits.reshape([16 * seqLen, model.config.vocabSize]).crossEntropy(targets: targets).item)
            }
            return (total / Double(Swift.max(batches, 1)), source.exactMatch(model: model, samples: samples))
        }
        if json {
            print(jsonString(HeldOutReport(checkpoint: checkpoint, data: data, heldoutLoss: loss, exactMatch: acc?.0, samples: acc?.1)))
        } else {
            print(String(format: "held-out loss %.4f nats/token", loss) + (acc.map { String(format: ", exact match %.1f%% of %d", 100 * $0.0, $0.1) } ?? ""))
        }
    }

    /// `eval --chat --json`.
    struct ChatReport: Encodable {
        let checkpoint: String
        let data: String
        let assistantLoss: Double
        let assistantTokens: Int
        let exactMatch: Double
        let conversations: Int

        enum CodingKeys: String, CodingKey {
            case checkpoint, data, assistantLoss = "assistant_loss", assistantTokens = "assistant_tokens"
            case exactMatch = "exact_match", conversations
        }
    }

    /// `eval --json` on pretraining data (exact match only where the data has answers).
    struct HeldOutReport: Encodable {
        let checkpoint: String
        let data: String
        let heldoutLoss: Double
        let exactMatch: Double?
        let samples: Int?

        enum CodingKeys: String, CodingKey {
            case checkpoint, data, heldoutLoss = "heldout_loss", exactMatch = "exact_match", samples
        }
    }
}
