import Testing
@testable import Training
@testable import NN
@testable import Data
@testable import Autograd

@Suite(.serialized) struct DenseTrainingTests {
    @Test func heldOutLossFallsFarBelowUnigram() {
        var o = DenseDemo.Options()
        o.steps = 300
        o.accuracySamples = 50
        o.logEvery = 1000
        let s = DenseDemo.run(o) { _ in }
        // The byte unigram entropy of the corpus is ~2.5 nats; learning the digits' structure
        // takes the model well below it. Over seeds 1234, 1, 2, 3 the final/unigram ratio was
        // 0.601, 0.560, 0.593, 0.573 (sd 0.018): the bound sits 5 sd above their mean, not
        // inside their spread as the earlier 0.6 did (which a change of GEMM bits crossed).
        #expect(s.heldoutLossInitial > s.unigramBaselineNats)
        #expect(s.heldoutLossFinal < 0.68 * s.unigramBaselineNats,
                "held-out \(s.heldoutLossFinal) vs unigram \(s.unigramBaselineNats)")
    }

    @Test func peakMemoryStaysFlat() {
        let c = DenseDecoderConfig(vocabSize: 256, hiddenSize: 64, numHiddenLayers: 2, numAttentionHeads: 2,
                                   intermediateSize: 128, maxPositionEmbeddings: 64)
        let trainer = DenseDecoderTrainer(model: DenseDecoderLM(c, seed: 1))
        let task = SyntheticArithmetic()
        var cursor: UInt64 = 0
        var after10 = 0
        for step in 0..<100 {
            let (tokens, next) = task.trainTokens(seed: 1, start: cursor, count: 8 * 65)
            cursor = next
            _ = trainer.step(rows: tokens, batch: 8, length: 64, lr: 1e-3)
            if step == 9 { after10 = ProcessStats.peakRSS }
        }
        let after100 = ProcessStats.peakRSS
        // One step's activations are ~10 MB here: a leak of one step's graph per step would add
        // ~1 GB over 90 steps; a flat profile adds nothing but noise.
        #expect(after100 - after10 < 16 << 20, "peak RSS grew \((after100 - after10) >> 20) MB over 90 steps")
    }

    @Test func arithmeticTaskSplitsAndIsDeterministic() {
        let task = SyntheticArithmetic()
        let held = Set(task.heldOutPairs.map { "\($0.0)+\($0.1)" })
        #expect(held.count > 800 && held.count < 1200)
        for i in 0..<2000 {
            let (a, b) = task.trainPair(seed: 9, index: UInt64(i))
            #expect(!held.contains("\(a)+\(b)"))
        }
        #expect(task.trainTokens(seed: 9, start: 5, count: 100).tokens == task.trainTokens(seed: 9, start: 5, count: 100).tokens)
        #expect(SyntheticArithmetic.text(12, 34) == "12+34=46\n")
    }

    @Test func chatAndPromptFormsUseTrainingPairsOnly() {
        let task = SyntheticArithmetic()
        let held = Set(task.heldOutPairs.map { "What is \($0.0)+\($0.1)?" })
        for i in 0..<500 {
            let c = task.chat(seed: 1, index: UInt64(i))
            #expect(c.map(\.role) == ["user", "assistant"])
            #expect(!held.contains(c[0].content))
            let parts = c[0].content.dropFirst(8).dropLast().split(separator: "+").compactMap { Int($0) }
            #expect(parts.count == 2 && c[1].content == "\(parts[0])+\(parts[1])=\(parts[0] + parts[1])")
            let p = task.promptWithAnswer(seed: 1, index: UInt64(i))
            #expect(!held.contains(p.prompt))
        }
        #expect(held.contains(task.promptWithAnswer(seed: 1, index: 3, heldOut: true).prompt))
        #expect(task.chat(seed: 1, index: 9) == task.chat(seed: 1, index: 9))
    }

    /// The demo's SFT data: training pairs only, deterministic, the operands restated right and
    /// the sum one too large in about 80% of the conversations.
    @Test func offByOneChatIsASloppyAnnotator() {
        let task = SyntheticArithmetic()
        let held = Set(task.heldOutPairs.map { "What is \($0.0)+\($0.1)?" })
        var sloppy = 0
        for i in 0..<2000 {
            let c = task.chat(seed: 3, index: UInt64(i), offByOne: 0.8)
            #expect(c == task.chat(seed: 3, index: UInt64(i), offByOne: 0.8))
            #expect(c[0] == task.chat(seed: 3, index: UInt64(i))[0] && !held.contains(c[0].content))
            let parts = c[0].content.dropFirst(8).dropLast().split(separator: "+").compactMap { Int($0) }
            let answer = c[1].content.split(separator: "=")
            #expect(answer.count == 2 && answer[0] == "\(parts[0])+\(parts[1])")
            let off = Int(answer[1])! - (parts[0] + parts[1])
            #expect(off == 0 || off == 1)
            sloppy += off
        }
        #expect(sloppy > 1530 && sloppy < 1670, "\(sloppy) of 2000 answers off by one")
    }
}
