import Foundation
import Autograd

/// The built-in decimal-addition task: "a+b=c\n" as bytes. It needs no download, its answers
/// can be checked exactly, and a small model learns it in minutes, so demos and tests run
/// offline. Which (a, b) pairs are held out is a fixed function of the pair, never of the seed,
/// so held-out numbers from different runs are comparable.
package struct SyntheticArithmetic: Sendable {
    package let maxOperand: Int
    /// Every `heldOutEvery`-th pair (by a hash of the pair) is never trained on.
    package let heldOutEvery: Int

    package init(maxOperand: Int = 99, heldOutEvery: Int = 10) {
        self.maxOperand = maxOperand
        self.heldOutEvery = heldOutEvery
    }

    package static let eos = Int(UInt8(ascii: "\n"))
    package static let vocabSize = 256

    package func isHeldOut(_ a: Int, _ b: Int) -> Bool {
        var h = UInt64(a &* 1_000_003 &+ b) &* 0x9E37_79B9_7F4A_7C15
        h ^= h >> 29
        return h % UInt64(heldOutEvery) == 0
    }

    /// The held-out pairs in a fixed pseudo-random order, so that any prefix (the first 200
    /// for accuracy) samples the whole range of operands, not only the small ones.
    package var heldOutPairs: [(Int, Int)] {
        var out: [(Int, Int, UInt64)] = []
        for a in 0...maxOperand {
            for b in 0...maxOperand where isHeldOut(a, b) {
                var h = UInt64(a &* 7919 &+ b &* 104_729 &+ 1) &* 0xD6E8_FEB8_6659_FD93
                h ^= h >> 32
                out.append((a, b, h))
            }
        }
        return out.sorted { $0.2 < $1.2 }.map { ($0.0, $0.1) }
    }

    package static func text(_ a: Int, _ b: Int) -> String { "\(a)+\(b)=\(a + b)\n" }
    package static func prompt(_ a: Int, _ b: Int) -> String { "\(a)+\(b)=" }

    /// The `i`-th training pair of the stream for `seed` (pure function of (seed, i)).
    package func trainPair(seed: UInt64, index: UInt64) -> (Int, Int) {
        let rng = Philox(seed: seed, purpose: "arithmetic")
        var j = index &* 4
        while true {
            let r = rng.uint64(j)
            let n = UInt64(maxOperand + 1)
            let a = Int(r % n), b = Int((r / n) % n)
            if !isHeldOut(a, b) { return (a, b) }
            j &+= 1  // rare: skip held-out pairs deterministically
        }
    }

    /// `count` tokens of the training stream starting at example `start`; returns the tokens and
    /// the index of the next example.
    package func trainTokens(seed: UInt64, start: UInt64, count: Int) -> (tokens: [Int], next: UInt64) {
        var tokens: [Int] = []
        tokens.reserveCapacity(count + 16)
        var i = start
        while tokens.count < count {
            let (a, b) = trainPair(seed: seed, index: i)
            tokens.append(contentsOf: SyntheticArithmetic.text(a, b).utf8.map(Int.init))
            i += 1
        }
        return (Array(tokens.prefix(count)), i)
    }

    /// The held-out pairs as one token stream (for held-out loss).
    package var heldOutTokens: [Int] {
        heldOutPairs.flatMap { SyntheticArithmetic.text($0.0, $0.1).utf8.map(Int.init) }
    }

    /// Entropy (nats/token) of the byte unigram distribution of `tokens`: the loss of the best
    /// model that ignores context, the baseline a trained model must beat.
    package static func unigramEntropy(_ tokens: [Int]) -> Double {
        var counts = [Int: Int]()
        for t in tokens { counts[t, default: 0] += 1 }
        let n = Double(tokens.count)
        return counts.values.reduce(0.0) { acc, c in
            let p = Double(c) / n
            return acc - p * Foundation.log(p)
        }
    }
}

/// The arithmetic task in the forms the post-training stages read: chat conversations for SFT
/// and prompts with verifiable answers for GRPO. Both use training pairs only, so the held-out
/// sums stay unseen in every stage.
extension SyntheticArithmetic {
    package struct ChatMessage: Codable, Sendable, Equatable {
        package let role: String
        package let content: String
        package init(role: String, content: String) { self.role = role; self.content = content }
    }

    package struct PromptWithAnswer: Codable, Sendable, Equatable {
        /// The prompt's text (its last user message when given as messages).
        package let prompt: String
        package let answer: String
        /// The prompt as a conversation, when the data gave one (`"prompt": [messages...]`).
        package var messages: [ChatMessage]? = nil
        package init(prompt: String, answer: String, messages: [ChatMessage]? = nil) {
            self.prompt = prompt
            self.answer = answer
            self.messages = messages
        }
        package var conversation: [ChatMessage] { messages ?? [ChatMessage(role: "user", content: prompt)] }
    }

    /// Conversation `index` of `synthetic:arithmetic-chat`. With `offByOne`, the conversations
    /// of `synthetic:arithmetic-chat-off-by-one`: demonstrations from a sloppy annotator whose
    /// answer is one too large in that fraction of them (a draw keyed by the index), the
    /// restated operands always right. SFT on them learns the turn format and the habit; a
    /// verifiable reward can then correct the habit (the demo's GRPO stage, docs/grpo.md).
    package func chat(seed: UInt64, index: UInt64, offByOne: Float = 0) -> [ChatMessage] {
        let (a, b) = trainPair(seed: seed &+ 0xC4A7, index: index)
        let sloppy = offByOne > 0 && Philox(seed: seed, purpose: "chat-off-by-one").uniform(index) < offByOne
        let sum = a + b + (sloppy ? 1 : 0)
        return [ChatMessage(role: "user", content: "What is \(a)+\(b)?"), ChatMessage(role: "assistant", content: "\(a)+\(b)=\(sum)")]
    }

    /// Prompt `index` of `synthetic:arithmetic-prompts`, with the answer a reward checks.
    package func promptWithAnswer(seed: UInt64, index: UInt64, heldOut: Bool = false) -> PromptWithAnswer {
        let (a, b) = heldOut ? heldOutPairs[Int(index) % heldOutPairs.count] : trainPair(seed: seed &+ 0x6E90, index: index)
        return PromptWithAnswer(prompt: "What is \(a)+\(b)?", answer: "\(a + b)")
    }
}
