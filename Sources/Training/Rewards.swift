import Foundation
import Data
import DeepSeek
import Parallel

/// One sampled completion as the reward functions see it.
package struct Completion: Sendable, Codable {
    package var prompt: String
    package var answer: String
    /// The completion's text, without its end-of-turn token.
    package var completion: String
    /// Cut at max_completion_length before it ended its turn.
    package var truncated: Bool
}

/// A reward function failed (a crashed or garbled external command): which, and why.
package struct RewardError: Error, CustomStringConvertible {
    package let description: String
}

/// Scores a batch of completions, one number each (TRL's reward functions, batched).
package protocol RewardFunction: Sendable {
    var name: String { get }
    func score(_ batch: [Completion]) throws -> [Double]
}

/// The final answer of a completion: what follows its last "=" (a completion may show its
/// work, "12+34=46"), or all of it, trimmed of surrounding spaces.
package func finalAnswer(_ completion: String) -> String {
    let tail = completion.split(separator: "=", omittingEmptySubsequences: false).last.map(String.init) ?? completion
    return tail.trimmingCharacters(in: .whitespaces)
}

/// 1 when the completion's final answer is the answer.
package struct ExactAnswerReward: RewardFunction {
    package var name: String { "exact" }
    package init() {}
    package func score(_ batch: [Completion]) throws -> [Double] {
        batch.map { finalAnswer($0.completion) == $0.answer ? 1 : 0 }
    }
}

/// 1 when the completion is in the expected form: it ended its turn before the length limit,
/// is one non-empty line without surrounding spaces, and its final answer is a number when the
/// answer is one.
package struct AnswerFormatReward: RewardFunction {
    package var name: String { "format" }
    /// With a pattern: 1 when the (untruncated) completion matches it from its first character.
    package let pattern: TokenRegex?
    package init(pattern: TokenRegex? = nil) { self.pattern = pattern }
    package func score(_ batch: [Completion]) throws -> [Double] {
        try batch.map { c in
            let t = c.completion
            if let pattern {
                guard !c.truncated, let m = try pattern.firstMatch(in: [UInt32](t.unicodeScalars.map(\.value))) else { return 0 }
                return m.lowerBound == 0 ? 1 : 0
            }
            guard !c.truncated, !t.isEmpty, t == t.trimmingCharacters(in: .whitespacesAndNewlines) else { return 0 }
            if Double(c.answer) != nil {
                let a = finalAnswer(t)
                return !a.isEmpty && Double(a) != nil && a.allSatisfy { $0.isNumber || "-.".contains($0) } ? 1 : 0
            }
            return 1
        }
    }
}

/// Rewards computed by another program, for users who score in another language: the
/// completions go to `/bin/sh -c command` on stdin as JSONL ({"prompt", "completion",
/// "answer", "truncated"} per line), and it prints one number per line on stdout, in order.
/// A non-zero exit, a timeout, or output that is not exactly one number per completion is a
/// `RewardError` naming the command and the line.
package struct CommandReward: RewardFunction {
    package let name: String
    package let command: String
    package let timeout: Double

    package init(name: String, command: String, timeout: Double = 60) {
        self.name = name
        self.command = command
        self.timeout = timeout
    }

    package func score(_ batch: [Completion]) throws -> [Double] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", command]
        let input = Pipe(), output = Pipe(), errors = Pipe()
        p.standardInput = input
        p.standardOutput = output
        p.standardError = errors
        // The MPI variables of this rank must not reach a child that might itself use MPI.
        p.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("OMPI_") && !$0.key.hasPrefix("PMIX_") }
        do { try p.run() } catch { throw RewardError(description: "reward command \"\(command)\" could not start: \(error)") }
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var text = Data()
        for c in batch { text += (try? enc.encode(c)) ?? Data(); text += Data("\n".utf8) }
        nonisolated(unsafe) var out = Data(), err = Data()
        let readers = [Thread { out = output.fileHandleForReading.readDataToEndOfFile() },
                       Thread { err = errors.fileHandleForReading.readDataToEndOfFile() }]
        readers.forEach { $0.start() }
        // A command that exits without reading (e.g. on an error) closes the pipe first: the
        // write then fails with EPIPE (SIGPIPE is ignored, see DeepTrain.main) and the
        // command's exit status below tells what happened. Found on a slow kernel, where the
        // command had exited before the write began.
        try? input.fileHandleForWriting.write(contentsOf: text)
        try? input.fileHandleForWriting.close()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(2000) }
        if p.isRunning {
            p.terminate()
            throw RewardError(description: "reward command \"\(command)\" did not finish within \(Int(timeout)) s")
        }
        while readers.contains(where: { !$0.isFinished }) { usleep(1000) }
        let stderrText = String(decoding: err, as: UTF8.self).split(separator: "\n").suffix(3).joined(separator: " | ")
        guard p.terminationStatus == 0 else {
            throw RewardError(description: "reward command \"\(command)\" exited with status \(p.terminationStatus)"
                              + (stderrText.isEmpty ? "" : ": \(stderrText)"))
        }
        let lines = String(decoding: out, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: true)
        guard lines.count == batch.count else {
            throw RewardError(description: "reward command \"\(command)\" printed \(lines.count) lines for \(batch.count) completions; expected one number per line")
        }
        return try lines.enumerated().map { i, line in
            guard let v = Double(line.trimmingCharacters(in: .whitespaces)), v.isFinite else {
                throw RewardError(description: "reward command \"\(command)\", output line \(i + 1): \"\(line.prefix(60))\" is not a finite number")
            }
            return v
        }
    }
}

/// A reward model scoring each completion: its prompt's tokens and the completion's (with the
/// end of turn when it ended) through the reward model on the grid — every rank of a position
/// takes part, its last stage reads the `score` head at the row's last token (docs/reward.md).
/// It reads the policy's tokens, so it must share the policy's tokenizer. Not a per-batch
/// function: GRPO calls `scores`, held-out evaluation `scoresOnEveryRank`.
package final class ModelReward: RewardFunction, @unchecked Sendable {
    package let name = "model"
    let inference: ShardedInference
    let source: String

    init(inference: ShardedInference, source: String) {
        self.inference = inference
        self.source = source
    }

    package func score(_ batch: [Completion]) throws -> [Double] {
        throw RewardError(description: "reward model \(source) scores on the grid (GRPO's generation batches), not per batch")
    }

    /// Each row's reward on every rank: batches of 16 rows, batch j on data-parallel position
    /// j mod dp, the world's sum gathering them (one contributor each: the same at every layout).
    func scoresOnEveryRank(_ rows: [([Int], [Int])], pad: Int) throws -> [Double] {
        let grid = inference.grid, starts = Array(stride(from: 0, to: rows.count, by: 16))
        let mine = Array(stride(from: grid.dpRank, to: starts.count, by: grid.layout.dp))
        let got = try scores(mine.map { Array(rows[starts[$0]..<Swift.min(starts[$0] + 16, rows.count)]) }, pad: pad)
        var all = [Double](repeating: 0, count: rows.count)
        if grid.isLastStage {
            for (j, b) in mine.enumerated() { for (r, x) in got[j].enumerated() { all[starts[b] + r] = x } }
        }
        try grid.world.allreduceSum(&all)
        return all
    }

    /// Per batch of (prompt, completion) token rows, each row's reward (on a position's last
    /// stage; zeros elsewhere).
    func scores(_ batches: [[([Int], [Int])]], pad: Int) throws -> [[Double]] {
        var out = batches.map { [Double](repeating: 0, count: $0.count) }
        let lengths = batches.map { b in b.map { $0.0.count + $0.1.count }.max() ?? 1 }
        let rows = zip(batches, lengths).map { b, l in
            b.flatMap { p, c in p + c + [Int](repeating: pad, count: l - p.count - c.count) }
        }
        try inference.forward(zip(rows, zip(batches, lengths)).map { ShardedInference.Batch(ids: $0, rows: $1.0.count, length: $1.1) }) { j, s in
            let l = lengths[j]
            let last = batches[j].enumerated().map { r, row in r * l + Swift.max(row.0.count + row.1.count, 1) - 1 }
            out[j] = DeepSeekForCausalLM.rewards(s, lastPositions: last).values.map(Double.init)
        }
        return out
    }
}
