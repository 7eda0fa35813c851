import Autograd

extension DeepSeekForCausalLM {
    /// A reward model made from this language model, as transformers'
    /// `AutoModelForSequenceClassification.from_pretrained(..., num_labels=1)` makes one: the
    /// body's weights copied, `lm_head` and any multi-token-prediction depths dropped, a new
    /// `score` head [1, hidden] drawn from normal(0, initializer_range) keyed by `seed`.
    /// `holds`: the parameters this rank keeps (the others are neither drawn nor copied).
    package func rewardModel(seed: UInt64, positions: Int, holds: ((String) -> Bool)? = nil) -> DeepSeekForCausalLM {
        var c = config
        c.numLabels = 1
        c.numNextnPredictLayers = 0
        let rm = DeepSeekForCausalLM(c, seed: seed, positions: positions, holds: holds)
        let mine = Dictionary(uniqueKeysWithValues: namedParameters())
        for (name, p) in rm.namedParameters() where name != "score.weight" && holds?(name) ?? true {
            guard let from = mine[name] else { continue }
            precondition(from.shape == p.shape, "\(name): \(from.shape) vs \(p.shape)")
            p.data.update(from: from.data, count: p.count)
        }
        rm.setRouterBiases(routerBiasValues)
        return rm
    }

    /// Each row's reward: the head's output at its last token, `lastPositions[r]` (row-major
    /// positions in [rows, length]); `scores` [rows, length, 1].
    package static func rewards(_ scores: Tensor, lastPositions: [Int]) -> Tensor {
        scores.reshape([scores.count, 1]).indexSelect(lastPositions).reshape([lastPositions.count])
    }
}
