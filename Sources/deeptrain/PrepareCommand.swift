import ArgumentParser
import Foundation
import FileSafety
import Data
import Training

struct PrepareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prepare",
        abstract: "Text files or JSONL ({\"text\": ...}) → tokenizer.json + token shards for training; chat JSONL → a checked SFT data directory.",
        discussion: "Files ending in .jsonl are read a JSON object per line; other files are one document each. Without --tokenizer, a byte-level BPE tokenizer is trained on the inputs. The output directory is complete only once index.json is written; a failed run leaves nothing. Chat JSONL ({\"messages\": [...]} per line, docs/grpo.md) is checked line by line and written as conversations.jsonl + chat.json (counts and lengths under the chat template) for an sft stage's data.")

    @Argument(help: "Input files.") var inputs: [String]
    @Option(help: "Output directory.") var output: String
    @Option(help: "An existing tokenizer.json (otherwise one is trained).") var tokenizer: String?
    @Option(help: "Vocabulary size of a trained tokenizer.") var vocabSize = 4096
    @Option(help: "End-of-sequence token placed between documents.") var eos = "<|eos|>"
    @Option(help: "Tokens per shard file.") var shardTokens = 1 << 24
    @Option(help: "A chat template (.jinja) to ship beside the tokenizer, with a tokenizer_config.json naming --eos (and --bos): the output directory is then a tokenizer as transformers loads it.")
    var chatTemplate: String?
    @Option(help: "Beginning-of-sequence token for tokenizer_config.json (trained as a special token).") var bos: String?
    @Option(help: "A special token for the trained tokenizer (repeat for several), e.g. a chat template's <|im_start|>.")
    var specialToken: [String] = []

    func validate() throws {
        guard !inputs.isEmpty else { throw ValidationError("give at least one input file") }
        guard vocabSize >= 257, shardTokens > 0 else { throw ValidationError("--vocab-size must be ≥ 257 and --shard-tokens positive") }
    }

    func run() throws {
        if inputs.allSatisfy(ChatPrepare.isChat) {
            let s = try ChatPrepare.run(inputs: inputs, output: output)
            print("wrote \(output): \(s.conversations) conversations, \(s.tokens) tokens (\(s.assistantTokens) trained), "
                  + "longest \(s.longest), 99% within \(s.p99Length) tokens: seq_len \(s.p99Length) keeps them whole")
            return
        }
        if inputs.contains(where: ChatPrepare.isChat) {
            throw ValidationError("mix of chat JSONL and text inputs; prepare them separately")
        }
        var o = Prepare.Options(inputs: inputs, output: output, tokenizer: tokenizer)
        o.vocabSize = vocabSize
        o.eos = eos
        o.shardTokens = shardTokens
        o.specialTokens = specialToken
        o.chatTemplate = chatTemplate
        o.bos = bos
        let start = Date()
        let tty = isatty(2) != 0
        let index: ShardIndex
        do {
            index = try Prepare.run(o) { files, docs, tokens in
                let line = String(format: "prepare: %d/%d files, %d documents, %d tokens, %.0f tokens/s", files, inputs.count, docs, tokens,
                                  Double(tokens) / Swift.max(Date().timeIntervalSince(start), 1e-6))
                FileHandle.standardError.write(Data((tty ? "\u{1B}[2K\r" + line : line + "\n").utf8))
            }
        } catch {
            // End the progress line, so the error starts a line of its own.
            if tty { FileHandle.standardError.write(Data("\n".utf8)) }
            throw error
        }
        if tty { FileHandle.standardError.write(Data("\n".utf8)) }
        print("wrote \(output): \(index.documents) documents, \(index.tokens) tokens in \(index.shards.count) shard(s), vocabulary \(index.vocabSize)")
    }
}
