import Testing
@testable import NN
@testable import Autograd

@Suite struct ModuleTests {
    let config = DenseDecoderConfig(vocabSize: 32, hiddenSize: 16, numHiddenLayers: 2, numAttentionHeads: 2,
                                    intermediateSize: 24, maxPositionEmbeddings: 8)

    @Test func parameterNamesFollowHuggingFace() {
        let names = DenseDecoderLM(config, seed: 1).namedParameters().map(\.0)
        #expect(names.first == "model.embed_tokens.weight")
        #expect(names.contains("model.layers.0.self_attn.q_proj.weight"))
        #expect(names.contains("model.layers.1.mlp.down_proj.weight"))
        #expect(names.contains("model.layers.1.post_attention_layernorm.weight"))
        #expect(names.contains("model.norm.weight"))
        #expect(names.last == "lm_head.weight")
        #expect(names.count == 1 + 2 * 9 + 1 + 1)
        #expect(Set(names).count == names.count)
    }

    @Test func initialisationIsNormalAndKeyedByName() {
        let a = DenseDecoderLM(config, seed: 5), b = DenseDecoderLM(config, seed: 5), c = DenseDecoderLM(config, seed: 6)
        for ((n, x), (_, y)) in zip(a.namedParameters(), b.namedParameters()) {
            #expect(x.values == y.values, "\(n) differs between two inits with one seed")
        }
        #expect(a.lm_head.weight.values != c.lm_head.weight.values)
        #expect(a.model.norm.weight.values.allSatisfy { $0 == 1 })
        let w = DenseDecoderLM(DenseDecoderConfig(vocabSize: 512, hiddenSize: 256, numHiddenLayers: 1, numAttentionHeads: 2,
                                                  intermediateSize: 8, maxPositionEmbeddings: 4), seed: 1).lm_head.weight.values
        let mean = w.reduce(0, +) / Float(w.count)
        let std = (w.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(w.count)).squareRoot()
        #expect(abs(mean) < 1e-3 && abs(std - 0.02) < 5e-4)
    }

    @Test func linearAndEmbedding() {
        let l = Linear(3, 2, bias: true)
        l.weight.copy(from: Tensor([1, 0, 1, 0, 1, 0], shape: [2, 3]))
        l.bias!.copy(from: Tensor([10, 20], shape: [2]))
        #expect(l(Tensor([1, 2, 3], shape: [1, 3])).values == [14, 22])
        let e = Embedding(4, 2)
        e.weight.copy(from: Tensor([0, 1, 2, 3, 4, 5, 6, 7], shape: [4, 2]))
        #expect(e([3, 0], shape: [1, 2]).values == [6, 7, 0, 1])
        #expect(e([3, 0], shape: [1, 2]).shape == [1, 2, 2])
    }

    @Test func denseModelGradientsMatchFiniteDifferences() {
        let m = DenseDecoderLM(config, seed: 3)
        let ids = [1, 5, 7, 2, 9, 3, 3, 1], targets = [5, 7, 2, 9, 3, 3, 1, ignoreIndex]
        let loss = m.loss(ids, targets: targets, batch: 2, length: 4)
        loss.backward()
        // Spot-check a few coordinates of several parameters (the whole model would be slow).
        for (name, p) in m.namedParameters() where name.hasSuffix("q_proj.weight") || name.hasSuffix("norm.weight") || name == "lm_head.weight" {
            for i in [0, p.count / 2, p.count - 1] {
                let saved = p.data[i], h: Float = 1e-2
                p.data[i] = saved + h
                let plus = withNoGrad { Double(m.loss(ids, targets: targets, batch: 2, length: 4).item) }
                p.data[i] = saved - h
                let minus = withNoGrad { Double(m.loss(ids, targets: targets, batch: 2, length: 4).item) }
                p.data[i] = saved
                let numeric = (plus - minus) / Double(2 * h)
                #expect(abs(numeric - Double(p.grad!.values[i])) < 2e-3 + 2e-2 * abs(numeric), "\(name)[\(i)]")
            }
        }
    }
}
