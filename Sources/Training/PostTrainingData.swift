import Foundation
import Autograd
import DeepSeek
import Data

/// The conversations of an SFT stage and the prompts of a GRPO stage, with what is held out for
/// evaluation. Item g of the global stream is a pure function of (seed, g): the order does not
/// depend on the layout or on restarts.
package struct PostTrainingData {
    package typealias Rendered = (tokens: [Int], trained: [Bool])
    enum Source {
        case arithmetic(SyntheticArithmetic)
        case conversations(train: [[ChatMessage]], heldOut: [[ChatMessage]], trainRendered: [Rendered], heldRendered: [Rendered])
        case prompts(train: [PromptWithAnswer], heldOut: [PromptWithAnswer], trainTokens: [[Int]], heldTokens: [[Int]])
        case preferences(train: [PreferencePair], heldOut: [PreferencePair])
    }
    let source: Source
    package let spec: String
    package let format: ChatFormat
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

    package static let chatOffByOne = "synthetic:arithmetic-chat-off-by-one"
    /// The sloppy annotator's rate: well above one half, so that the habit is what greedy
    /// decoding picks after SFT with a margin that random weight noise does not cross (at 0.6
    /// the shuffled-reward control wandered by ±10 points, at 0.8 by up to +5), while sampling
    /// still finds the right answer often enough to reward (docs/grpo.md).
    package static let offByOneFraction: Float = 0.9

    /// What a post-training file holds: conversations (SFT), prompts with answers (GRPO) or
    /// preference pairs (reward models).
    package enum Form: Sendable { case conversations, prompts, preferences }

    /// The arithmetic task's preference pairs: the right sum chosen; rejected, half the time one
    /// too many, otherwise another wrong sum.
    package static let arithmeticPreferences = "synthetic:arithmetic-preferences"

    /// `synthetic:arithmetic-chat` (or `-off-by-one`), `synthetic:arithmetic-prompts` or a JSONL
    /// file (`form` says which). Every item of a file is trained on; evaluation data is
    /// `evalData` (a file of the same form) or, when `evalFraction` is given, that fraction of
    /// the file's last items. Every item is rendered with `format` up front, so a conversation
    /// the template rejects stops the stage before it starts, naming its line.
    package static func open(_ spec: String, form: Form, format: ChatFormat = .bytes, evalData: String? = nil,
                            evalFraction: Double? = nil) throws -> PostTrainingData {
        if spec.hasPrefix("synthetic:") {
            guard !format.isTemplate else {
                throw DataError(file: spec, line: nil, "built-in data uses the built-in byte format; a tokenizer needs a JSONL file")
            }
            return PostTrainingData(source: .arithmetic(SyntheticArithmetic()), spec: spec, format: format)
        }
        func split<T>(_ xs: [(T, Int)], _ extra: [(T, Int)]?) throws -> ([(T, Int)], [(T, Int)]) {
            if let extra { return (xs, extra) }
            guard let f = evalFraction, f > 0 else { return (xs, []) }
            let held = Swift.max(1, Int((Double(xs.count) * f).rounded()))
            guard xs.count > held else {
                throw DataError(file: spec, line: nil, "has \(xs.count) item(s); eval_fraction \(f) would leave none to train on")
            }
            return (Array(xs.dropLast(held)), Array(xs.suffix(held)))
        }
        // Every item rendered up front; a template failure names the item's file and line.
        func render<T, R>(_ items: [(T, Int)], file: String, _ f: (T) throws -> R) throws -> [R] {
            try items.map { item, line in
                do { return try f(item) } catch let e as TemplateError { throw DataError(file: file, line: line, e.report) }
            }
        }
        if form == .conversations {
            let path = ChatPrepare.conversations(in: spec) ?? spec
            let all = try ChatJSONL.loadNumbered(path, allowAnyRole: format.isTemplate)
            let extra = try evalData.map { try ChatJSONL.loadNumbered(ChatPrepare.conversations(in: $0) ?? $0, allowAnyRole: format.isTemplate) }
            let (t, h) = try split(all, extra)
            return PostTrainingData(source: .conversations(train: t.map(\.0), heldOut: h.map(\.0), trainRendered: try render(t, file: path, format.render),
                                                          heldRendered: try render(h, file: evalData ?? path, format.render)),
                                    spec: spec, format: format)
        }
        if form == .preferences {
            let all = try PreferenceJSONL.loadNumbered(spec, allowAnyRole: format.isTemplate)
            let extra = try evalData.map { try PreferenceJSONL.loadNumbered($0, allowAnyRole: format.isTemplate) }
            let (t, h) = try split(all, extra)
            // Rendered once here so that a pair the template rejects names its line now.
            _ = try render(t + h, file: spec) { [try format.render($0.chosen), try format.render($0.rejected)] }
            return PostTrainingData(source: .preferences(train: t.map(\.0), heldOut: h.map(\.0)), spec: spec, format: format)
        }
        let all = try PromptJSONL.loadNumbered(spec)
        let extra = try evalData.map { try PromptJSONL.loadNumbered($0) }
        let (t, h) = try split(all, extra)
        return PostTrainingData(source: .prompts(train: t.map(\.0), heldOut: h.map(\.0), trainTokens: try render(t, file: spec, format.prompt),
                                                 heldTokens: try render(h, file: evalData ?? spec, format.prompt)),
                                spec: spec, format: format)
    }

    /// Training conversations in one pass (nil: endless).
    package var count: Int? {
        switch source {
        case .arithmetic: return nil
        case .conversations(let t, _, _, _): return t.count
        case .prompts(let t, _, _, _): return t.count
        case .preferences(let t, _): return t.count
        }
    }

    /// Whether there is anything held out to evaluate on.
    package var hasHeldOut: Bool {
        switch source {
        case .arithmetic: return true
        case .conversations(_, let h, _, _): return !h.isEmpty
        case .prompts(_, let h, _, _): return !h.isEmpty
        case .preferences(_, let h): return !h.isEmpty
        }
    }

    /// Training conversation g: epoch g / count in an order shuffled per (seed, epoch).
    package func conversation(_ g: Int, seed: UInt64) -> [ChatMessage] {
        switch source {
        case .arithmetic(let task): return task.chat(seed: seed, index: UInt64(g), offByOne: spec == Self.chatOffByOne ? Self.offByOneFraction : 0)
        case .conversations(let t, _, _, _): return t[shuffled(g, count: t.count, seed: seed)]
        case .prompts(let t, _, _, _):
            let p = t[shuffled(g, count: t.count, seed: seed)]
            return p.conversation + [ChatMessage(role: "assistant", content: p.answer)]
        case .preferences(let t, _): return t[shuffled(g, count: t.count, seed: seed)].chosen
        }
    }

    /// Training conversation g as tokens with its trained mask.
    package func renderedConversation(_ g: Int, seed: UInt64) -> Rendered {
        switch source {
        case .conversations(let t, _, let r, _): return r[shuffled(g, count: t.count, seed: seed)]
        default: return ByteChatFormat.render(conversation(g, seed: seed))
        }
    }

    /// Training prompt g (GRPO).
    package func prompt(_ g: Int, seed: UInt64) -> PromptWithAnswer {
        switch source {
        case .arithmetic(let task): return task.promptWithAnswer(seed: seed, index: UInt64(g))
        case .prompts(let t, _, _, _): return t[shuffled(g, count: t.count, seed: seed)]
        case .conversations(let t, _, _, _): return Self.promptOf(t[shuffled(g, count: t.count, seed: seed)])
        case .preferences(let t, _): return Self.promptOf(t[shuffled(g, count: t.count, seed: seed)].chosen)
        }
    }

    /// Training prompt g's tokens (with the assistant header the completion follows).
    package func promptTokens(_ g: Int, seed: UInt64) -> [Int] {
        switch source {
        case .prompts(let t, _, let tokens, _): return tokens[shuffled(g, count: t.count, seed: seed)]
        default: return (try? format.prompt(prompt(g, seed: seed))) ?? ByteChatFormat.prompt(prompt(g, seed: seed).prompt)
        }
    }

    /// Held-out prompts with answers and their tokens (accuracy and reward) — for the arithmetic
    /// task, the sums no stage ever trains on.
    package func heldOutPrompts(_ n: Int) -> [(PromptWithAnswer, [Int])] {
        switch source {
        case .arithmetic(let task):
            return (0..<n).map { let p = task.promptWithAnswer(seed: 0, index: UInt64($0), heldOut: true); return (p, ByteChatFormat.prompt(p.prompt)) }
        case .prompts(_, let h, _, let tokens): return Array(zip(h, tokens).prefix(n))
        case .conversations(_, let h, _, _):
            return h.prefix(n).compactMap { c in
                let p = Self.promptOf(c)
                return (try? format.prompt(p)).map { (p, $0) }
            }
        case .preferences(_, let h):
            return h.prefix(n).compactMap { pair in
                let p = Self.promptOf(pair.chosen)
                return (try? format.prompt(p)).map { (p, $0) }
            }
        }
    }

    /// Held-out conversations as tokens with their trained masks (the loss on assistant tokens).
    package func heldOutConversations(_ n: Int) -> [Rendered] {
        switch source {
        case .arithmetic(let task):
            return task.heldOutPairs.prefix(n).map { a, b in
                ByteChatFormat.render([ChatMessage(role: "user", content: "What is \(a)+\(b)?"), ChatMessage(role: "assistant", content: "\(a)+\(b)=\(a + b)")])
            }
        case .conversations(_, _, _, let h): return Array(h.prefix(n))
        case .prompts(_, let h, _, _):
            return h.prefix(n).compactMap { try? format.render($0.conversation + [ChatMessage(role: "assistant", content: $0.answer)]) }
        case .preferences(_, let h): return h.prefix(n).compactMap { try? format.render($0.chosen) }
        }
    }

    /// Training preference pair g (reward models): a file's in an order shuffled per epoch, or
    /// the arithmetic task's — a training sum, the right answer chosen and a wrong one rejected.
    package func preferencePair(_ g: Int, seed: UInt64) -> PreferencePair {
        switch source {
        case .preferences(let t, _): return t[shuffled(g, count: t.count, seed: seed)]
        case .arithmetic(let task):
            let (a, b) = task.trainPair(seed: seed &+ 0x5EF5, index: UInt64(g))
            return Self.arithmeticPair(a, b, draw: Philox(seed: seed, purpose: "preference"), index: UInt64(g))
        default: preconditionFailure("preference pairs from \(spec)")
        }
    }

    /// The first `n` held-out preference pairs (for the arithmetic task, of sums no stage trains on).
    package func heldOutPreferences(_ n: Int) -> [PreferencePair] {
        switch source {
        case .preferences(_, let h): return Array(h.prefix(n))
        case .arithmetic(let task):
            let pairs = task.heldOutPairs
            return (0..<Swift.min(n, pairs.count)).map { i in
                Self.arithmeticPair(pairs[i].0, pairs[i].1, draw: Philox(seed: 0, purpose: "held-out-preference"), index: UInt64(i))
            }
        default: return []
        }
    }

    /// "What is a+b?" answered right (chosen) and wrong (rejected): one too many with odds 1/2,
    /// else another sum in 0...198 drawn at `index`.
    static func arithmeticPair(_ a: Int, _ b: Int, draw: Philox, index: UInt64) -> PreferencePair {
        let sum = a + b
        var wrong = sum + 1
        if draw.uniform(2 * index) >= 0.5 {
            wrong = Int(draw.uint64(2 * index + 1) % 198)
            if wrong >= sum { wrong += 1 }  // any of 0...198 but the sum
        }
        let user = ChatMessage(role: "user", content: "What is \(a)+\(b)?")
        return PreferencePair(chosen: [user, ChatMessage(role: "assistant", content: "\(a)+\(b)=\(sum)")],
                              rejected: [user, ChatMessage(role: "assistant", content: "\(a)+\(b)=\(wrong)")])
    }

    /// The last user turn before the last assistant turn, and that turn as the answer.
    static func promptOf(_ c: [ChatMessage]) -> PromptWithAnswer {
        let last = c.lastIndex { $0.role == "assistant" }!
        let user = c[..<last].last { $0.role == "user" }?.content ?? ""
        return PromptWithAnswer(prompt: user, answer: c[last].content, messages: Array(c[..<last]))
    }

    /// Position g of epoch g / n in a permutation keyed by (seed, epoch).
    func shuffled(_ g: Int, count n: Int, seed: UInt64) -> Int {
        orders.order(epoch: g / n, count: n, seed: seed)[g % n]
    }

    /// One SFT row: the conversation's tokens cut or padded to `length`+1; inputs are the first
    /// `length`, targets the next token where it is trained, −100 elsewhere. Returns whether it
    /// was cut.
    package static func sftRow(_ r: Rendered, length: Int, pad: Int) -> (inputs: [Int], targets: [Int], cut: Bool) {
        let (tokens, trained) = r
        var inputs = [Int](repeating: pad, count: length), targets = [Int](repeating: ignoreIndex, count: length)
        for j in 0..<Swift.min(length, tokens.count) { inputs[j] = tokens[j] }
        for j in 0..<length where j + 1 < tokens.count && trained[j + 1] { targets[j] = tokens[j + 1] }
        return (inputs, targets, tokens.count > length + 1)
    }

    /// Several conversations per row, without attention across them: rows of `length` tokens
    /// filled greedily in stream order (a conversation that does not fit starts the next row;
    /// one longer than a row is cut). Positions restart with each conversation; targets are
    /// set only inside a conversation, on its trained tokens. Row r is a pure function of the
    /// stream, so every rank packs the same rows.
    package final class Packer: @unchecked Sendable {
        let data: PostTrainingData
        let seed: UInt64
        let length: Int
        /// Row r holds conversations starts[r] ..< starts[r + 1].
        var starts = [0]
        let lock = NSLock()

        package init(data: PostTrainingData, seed: UInt64, length: Int) {
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
                    let n = data.renderedConversation(g, seed: seed).tokens.count
                    if used > 0 && used + n > length + 1 { break }
                    used += n
                    g += 1
                } while used < length + 1
                starts.append(g)
            }
            return starts[r]..<starts[r + 1]
        }

        /// Rows needed to cover the first `conversations` conversations.
        package func rows(covering conversations: Int) -> Int {
            var r = 0
            while range(r).upperBound < conversations { r += 1 }
            return r + 1
        }

        package func row(_ r: Int) -> (inputs: [Int], targets: [Int], positions: [Int], segments: [Int], conversations: Int) {
            var inputs: [Int] = [], targets: [Int] = [], positions: [Int] = [], segments: [Int] = []
            let convs = range(r)
            for (k, g) in convs.enumerated() {
                let (tokens, trained) = data.renderedConversation(g, seed: seed)
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
                inputs.append(data.format.pad)
                targets.append(ignoreIndex)
                positions.append(p)
                segments.append(convs.count)
                p += 1
            }
            return (inputs, targets, positions, segments, convs.count)
        }
    }
}
