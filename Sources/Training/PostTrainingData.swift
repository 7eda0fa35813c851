import Foundation
import Autograd
import DeepSeek
import Data

/// The conversations of an SFT stage and the prompts of a GRPO stage, with what is held out for
/// evaluation. Item g of the global stream is a pure function of (seed, g): the order does not
/// depend on the layout or on restarts.
public struct PostTrainingData {
    enum Source {
        case arithmetic(SyntheticArithmetic)
        case conversations(train: [[ChatMessage]], heldOut: [[ChatMessage]])
        case prompts(train: [PromptWithAnswer], heldOut: [PromptWithAnswer])
    }
    let source: Source
    public let spec: String
    let orders = EpochOrders()

    /// Each epoch's permutation, computed once (a JSONL file may hold many conversations).
    final class EpochOrders: @unchecked Sendable {
        var cache: [Int: [Int]] = [:]
        let lock = NSLock()
        func order(epoch: Int, count n: Int, seed: UInt64) -> [Int] {
            lock.lock()
            defer { lock.unlock() }
            if let o = cache[epoch] { return o }
            let rng = Philox(seed: seed, purpose: "sft-epoch", UInt64(epoch))
            let draws = (0..<n).map { rng.uniform(UInt64($0)) }
            let o = (0..<n).sorted { draws[$0] != draws[$1] ? draws[$0] < draws[$1] : $0 < $1 }
            if cache.count > 4 { cache.removeAll() }
            cache[epoch] = o
            return o
        }
    }

    public static let chatOffByOne = "synthetic:arithmetic-chat-off-by-one"
    /// The sloppy annotator's rate: well above one half, so that the habit is what greedy
    /// decoding picks after SFT with a margin that random weight noise does not cross (at 0.6
    /// the shuffled-reward control wandered by ±10 points), while sampling still finds the
    /// right answer often enough to reward.
    public static let offByOneFraction: Float = 0.8

    /// `synthetic:arithmetic-chat` (or `-off-by-one`), `synthetic:arithmetic-prompts` or a JSONL file (`kind` says
    /// which form). JSONL files keep their last 5% (at least one, at most 200) for evaluation.
    public static func open(_ spec: String, kind: String) throws -> PostTrainingData {
        if spec.hasPrefix("synthetic:") { return PostTrainingData(source: .arithmetic(SyntheticArithmetic()), spec: spec) }
        func split<T>(_ xs: [T]) throws -> ([T], [T]) {
            let held = Swift.min(200, Swift.max(1, xs.count / 20))
            guard xs.count > held else {
                throw DataError(file: spec, line: nil, "has \(xs.count) item(s); needs at least 2 (the last 5% are held out for evaluation)")
            }
            return (Array(xs.dropLast(held)), Array(xs.suffix(held)))
        }
        if kind == "sft" {
            let (t, h) = try split(ChatJSONL.load(ChatPrepare.conversations(in: spec) ?? spec))
            return PostTrainingData(source: .conversations(train: t, heldOut: h), spec: spec)
        }
        let (t, h) = try split(PromptJSONL.load(spec))
        return PostTrainingData(source: .prompts(train: t, heldOut: h), spec: spec)
    }

    /// Training conversations in one pass (nil: endless).
    public var count: Int? {
        switch source {
        case .arithmetic: return nil
        case .conversations(let t, _): return t.count
        case .prompts(let t, _): return t.count
        }
    }

    /// Training conversation g: epoch g / count in an order shuffled per (seed, epoch).
    public func conversation(_ g: Int, seed: UInt64) -> [ChatMessage] {
        switch source {
        case .arithmetic(let task): return task.chat(seed: seed, index: UInt64(g), offByOne: spec == Self.chatOffByOne ? Self.offByOneFraction : 0)
        case .conversations(let t, _): return t[shuffled(g, count: t.count, seed: seed)]
        case .prompts(let t, _):
            let p = t[shuffled(g, count: t.count, seed: seed)]
            return [ChatMessage(role: "user", content: p.prompt), ChatMessage(role: "assistant", content: p.answer)]
        }
    }

    /// Training prompt g (GRPO).
    public func prompt(_ g: Int, seed: UInt64) -> PromptWithAnswer {
        switch source {
        case .arithmetic(let task): return task.promptWithAnswer(seed: seed, index: UInt64(g))
        case .prompts(let t, _): return t[shuffled(g, count: t.count, seed: seed)]
        case .conversations(let t, _): return Self.promptOf(t[shuffled(g, count: t.count, seed: seed)])
        }
    }

    /// Held-out prompts with answers (accuracy and reward) — for the arithmetic task, the sums
    /// no stage ever trains on.
    public func heldOutPrompts(_ n: Int) -> [PromptWithAnswer] {
        switch source {
        case .arithmetic(let task): return (0..<n).map { task.promptWithAnswer(seed: 0, index: UInt64($0), heldOut: true) }
        case .prompts(_, let h): return Array(h.prefix(n))
        case .conversations(_, let h): return h.prefix(n).map(Self.promptOf)
        }
    }

    /// Held-out conversations (the loss on their assistant tokens).
    public func heldOutConversations(_ n: Int) -> [[ChatMessage]] {
        switch source {
        case .arithmetic(let task):
            return task.heldOutPairs.prefix(n).map { a, b in
                [ChatMessage(role: "user", content: "What is \(a)+\(b)?"), ChatMessage(role: "assistant", content: "\(a)+\(b)=\(a + b)")]
            }
        case .conversations(_, let h): return Array(h.prefix(n))
        case .prompts:
            return heldOutPrompts(n).map { [ChatMessage(role: "user", content: $0.prompt), ChatMessage(role: "assistant", content: $0.answer)] }
        }
    }

    /// The last user turn before the last assistant turn, and that turn as the answer.
    static func promptOf(_ c: [ChatMessage]) -> PromptWithAnswer {
        let last = c.lastIndex { $0.role == "assistant" }!
        let user = c[..<last].last { $0.role == "user" }?.content ?? ""
        return PromptWithAnswer(prompt: user, answer: c[last].content)
    }

    /// Position g of epoch g / n in a permutation keyed by (seed, epoch).
    func shuffled(_ g: Int, count n: Int, seed: UInt64) -> Int {
        orders.order(epoch: g / n, count: n, seed: seed)[g % n]
    }

    /// One SFT row: the conversation rendered, cut or padded to `length`+1 tokens; inputs are the
    /// first `length`, targets the next token where it is trained (assistant content and its
    /// end-of-turn), −100 elsewhere. Returns whether it was cut.
    public static func sftRow(_ conv: [ChatMessage], length: Int) -> (inputs: [Int], targets: [Int], cut: Bool) {
        let (tokens, trained) = ByteChatFormat.render(conv)
        var inputs = [Int](repeating: ByteChatFormat.endOfTurn, count: length), targets = [Int](repeating: ignoreIndex, count: length)
        for j in 0..<Swift.min(length, tokens.count) { inputs[j] = tokens[j] }
        for j in 0..<length where j + 1 < tokens.count && trained[j + 1] { targets[j] = tokens[j + 1] }
        return (inputs, targets, tokens.count > length + 1)
    }

    /// Several conversations per row, without attention across them: rows of `length` tokens
    /// filled greedily in stream order (a conversation that does not fit starts the next row;
    /// one longer than a row is cut). Positions restart with each conversation; targets are
    /// set only inside a conversation, on its trained tokens. Row r is a pure function of the
    /// stream, so every rank packs the same rows.
    public final class Packer: @unchecked Sendable {
        let data: PostTrainingData
        let seed: UInt64
        let length: Int
        /// Row r holds conversations starts[r] ..< starts[r + 1].
        var starts = [0]
        let lock = NSLock()

        public init(data: PostTrainingData, seed: UInt64, length: Int) {
            self.data = data
            self.seed = seed
            self.length = length
        }

        func range(_ r: Int) -> Range<Int> {
            lock.lock()
            defer { lock.unlock() }
            while starts.count <= r + 1 {
                var g = starts.last!, used = 0
                repeat {
                    let n = ByteChatFormat.render(data.conversation(g, seed: seed)).tokens.count
                    if used > 0 && used + n > length + 1 { break }
                    used += n
                    g += 1
                } while used < length + 1
                starts.append(g)
            }
            return starts[r]..<starts[r + 1]
        }

        /// Rows needed to cover the first `conversations` conversations.
        public func rows(covering conversations: Int) -> Int {
            var r = 0
            while range(r).upperBound < conversations { r += 1 }
            return r + 1
        }

        public func row(_ r: Int) -> (inputs: [Int], targets: [Int], positions: [Int], segments: [Int], conversations: Int) {
            var inputs: [Int] = [], targets: [Int] = [], positions: [Int] = [], segments: [Int] = []
            let convs = range(r)
            for (k, g) in convs.enumerated() {
                let (tokens, trained) = ByteChatFormat.render(data.conversation(g, seed: seed))
                let n = Swift.min(tokens.count, length + 1 - inputs.count)
                for j in 0..<n where inputs.count < length {
                    inputs.append(tokens[j])
                    targets.append(j + 1 < tokens.count && trained[j + 1] ? tokens[j + 1] : ignoreIndex)
                    positions.append(j)
                    segments.append(k)
                }
            }
            // Padding: its own segment, no targets.
            var p = 0
            while inputs.count < length {
                inputs.append(ByteChatFormat.endOfTurn)
                targets.append(ignoreIndex)
                positions.append(p)
                segments.append(convs.count)
                p += 1
            }
            return (inputs, targets, positions, segments, convs.count)
        }
    }
}
