import Foundation
import FileSafety

/// A bad model configuration: names the key, what it holds, and what is allowed.
package struct ConfigError: Error, CustomStringConvertible, Equatable {
    package let source: String
    package let key: String
    package let message: String
    package init(source: String = "config", key: String, _ message: String) {
        self.source = source
        self.key = key
        self.message = message
    }
    package var description: String { "\(source): \(key): \(message)" }
}

/// YaRN context extension as DeepSeek's config.json writes it (`rope_scaling`), or as
/// transformers 5 writes it (`rope_parameters`, with `rope_type` and `rope_theta` inside).
package struct RopeScaling: Codable, Sendable, Equatable {
    package var type: String
    package var factor: Double
    package var originalMaxPositionEmbeddings: Int
    package var betaFast: Double
    package var betaSlow: Double
    package var mscale: Double
    package var mscaleAllDim: Double

    package init(type: String = "yarn", factor: Double, originalMaxPositionEmbeddings: Int, betaFast: Double = 32,
                betaSlow: Double = 1, mscale: Double = 0.707, mscaleAllDim: Double = 0.707) {
        self.type = type
        self.factor = factor
        self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
        self.betaFast = betaFast
        self.betaSlow = betaSlow
        self.mscale = mscale
        self.mscaleAllDim = mscaleAllDim
    }

    enum CodingKeys: String, CodingKey {
        case type, ropeType = "rope_type", factor
        case originalMaxPositionEmbeddings = "original_max_position_embeddings"
        case betaFast = "beta_fast", betaSlow = "beta_slow", mscale, mscaleAllDim = "mscale_all_dim"
    }

    package init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        type = try c.decodeIfPresent(String.self, forKey: .type) ?? c.decodeIfPresent(String.self, forKey: .ropeType) ?? "yarn"
        factor = try c.decodeIfPresent(Double.self, forKey: .factor) ?? 1
        originalMaxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .originalMaxPositionEmbeddings) ?? 4096
        betaFast = try c.decodeIfPresent(Double.self, forKey: .betaFast) ?? 32
        betaSlow = try c.decodeIfPresent(Double.self, forKey: .betaSlow) ?? 1
        mscale = try c.decodeIfPresent(Double.self, forKey: .mscale) ?? 1
        mscaleAllDim = try c.decodeIfPresent(Double.self, forKey: .mscaleAllDim) ?? 0
    }

    package func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(type, forKey: .type)
        try c.encode(factor, forKey: .factor)
        try c.encode(originalMaxPositionEmbeddings, forKey: .originalMaxPositionEmbeddings)
        try c.encode(betaFast, forKey: .betaFast)
        try c.encode(betaSlow, forKey: .betaSlow)
        try c.encode(mscale, forKey: .mscale)
        try c.encode(mscaleAllDim, forKey: .mscaleAllDim)
    }
}

/// `model_type`: which DeepSeek generation a config describes.
package enum ModelType: String, Codable, Sendable, CaseIterable {
    case deepseekV2 = "deepseek_v2"
    case deepseekV3 = "deepseek_v3"
}

/// `topk_method`: how the router picks a token's experts (docs/design.md §9).
package enum TopKMethod: String, Codable, Sendable, CaseIterable {
    /// The K best experts (V2's default).
    case greedy
    /// Device-limited routing: the best experts within the `topk_group` best groups (V2).
    case groupLimitedGreedy = "group_limited_greedy"
    /// V3's node-limited routing with biased selection scores (aux-loss-free balancing).
    case noauxTC = "noaux_tc"
}

/// `scoring_func`: the router's scores.
package enum ScoringFunction: String, Codable, Sendable, CaseIterable {
    case softmax
    case sigmoid
}

/// The DeepSeek configuration, with the keys and meanings of the Hugging Face `config.json`
/// of DeepSeek-V2, V2-Lite (`model_type: deepseek_v2`) and V3 (`deepseek_v3`) (docs/design.md §9).
/// V3 changes the router (sigmoid scores, `noaux_tc` selection with a per-expert bias,
/// weights scaled after normalising) and adds multi-token prediction modules.
package struct DeepSeekConfig: Codable, Sendable, Equatable {
    package var modelType: ModelType
    package var vocabSize: Int
    package var hiddenSize: Int
    /// Width of the dense MLPs (the first `firstKDenseReplace` layers).
    package var intermediateSize: Int
    /// Width of one routed or shared expert.
    package var moeIntermediateSize: Int
    package var numHiddenLayers: Int
    package var numAttentionHeads: Int
    package var nSharedExperts: Int
    package var nRoutedExperts: Int
    package var routedScalingFactor: Double
    package var kvLoraRank: Int
    /// nil: queries use a plain `q_proj` (V2-Lite).
    package var qLoraRank: Int?
    package var qkRopeHeadDim: Int
    package var vHeadDim: Int
    package var qkNopeHeadDim: Int
    package var topkMethod: TopKMethod
    package var nGroup: Int
    package var topkGroup: Int
    package var numExpertsPerTok: Int
    package var moeLayerFreq: Int
    package var firstKDenseReplace: Int
    package var normTopkProb: Bool
    package var scoringFunc: ScoringFunction
    package var auxLossAlpha: Double
    package var seqAux: Bool
    package var hiddenAct: String
    package var maxPositionEmbeddings: Int
    package var initializerRange: Double
    package var rmsNormEps: Double
    package var ropeTheta: Double
    package var ropeScaling: RopeScaling?
    package var attentionBias: Bool
    package var tieWordEmbeddings: Bool
    /// Whether the checkpoint stores the rope dimensions as interleaved pairs (DeepSeek's
    /// layout; V2 always, V3's `rope_interleave`, default true) or in rotate-half order.
    package var ropeInterleave: Bool
    /// Multi-token-prediction modules (`num_nextn_predict_layers`, V3: 1), stored as layers
    /// num_hidden_layers ..< num_hidden_layers + this. 0: none.
    package var numNextnPredictLayers: Int
    /// A reward model (transformers' `...ForSequenceClassification`, one label): a scalar head
    /// `score` on the last token instead of `lm_head`. nil: a causal language model.
    package var numLabels: Int? = nil
    package var isRewardModel: Bool { numLabels != nil }

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case moeIntermediateSize = "moe_intermediate_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", numKeyValueHeads = "num_key_value_heads"
        case nSharedExperts = "n_shared_experts", nRoutedExperts = "n_routed_experts"
        case routedScalingFactor = "routed_scaling_factor", kvLoraRank = "kv_lora_rank", qLoraRank = "q_lora_rank"
        case qkRopeHeadDim = "qk_rope_head_dim", vHeadDim = "v_head_dim", qkNopeHeadDim = "qk_nope_head_dim"
        case topkMethod = "topk_method", nGroup = "n_group", topkGroup = "topk_group"
        case numExpertsPerTok = "num_experts_per_tok", moeLayerFreq = "moe_layer_freq"
        case firstKDenseReplace = "first_k_dense_replace", normTopkProb = "norm_topk_prob"
        case scoringFunc = "scoring_func", auxLossAlpha = "aux_loss_alpha", seqAux = "seq_aux"
        case hiddenAct = "hidden_act", maxPositionEmbeddings = "max_position_embeddings"
        case initializerRange = "initializer_range", rmsNormEps = "rms_norm_eps", ropeTheta = "rope_theta"
        case ropeScaling = "rope_scaling", ropeParameters = "rope_parameters"
        case attentionBias = "attention_bias", tieWordEmbeddings = "tie_word_embeddings"
        case modelType = "model_type", ropeInterleave = "rope_interleave"
        case numNextnPredictLayers = "num_nextn_predict_layers", numMtpLayers = "num_mtp_layers"
        case architectures, id2label, label2id
    }

    package init(vocabSize: Int, hiddenSize: Int, intermediateSize: Int, moeIntermediateSize: Int, numHiddenLayers: Int,
                numAttentionHeads: Int, nSharedExperts: Int, nRoutedExperts: Int, routedScalingFactor: Double,
                kvLoraRank: Int, qLoraRank: Int?, qkRopeHeadDim: Int, vHeadDim: Int, qkNopeHeadDim: Int,
                topkMethod: TopKMethod, nGroup: Int, topkGroup: Int, numExpertsPerTok: Int, moeLayerFreq: Int = 1,
                firstKDenseReplace: Int, normTopkProb: Bool, auxLossAlpha: Double, maxPositionEmbeddings: Int,
                ropeTheta: Double = 10_000, ropeScaling: RopeScaling?, rmsNormEps: Double = 1e-6,
                modelType: ModelType = .deepseekV2, numNextnPredictLayers: Int = 0) {
        self.modelType = modelType
        self.ropeInterleave = true
        self.numNextnPredictLayers = numNextnPredictLayers
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.moeIntermediateSize = moeIntermediateSize
        self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads
        self.nSharedExperts = nSharedExperts
        self.nRoutedExperts = nRoutedExperts
        self.routedScalingFactor = routedScalingFactor
        self.kvLoraRank = kvLoraRank
        self.qLoraRank = qLoraRank
        self.qkRopeHeadDim = qkRopeHeadDim
        self.vHeadDim = vHeadDim
        self.qkNopeHeadDim = qkNopeHeadDim
        self.topkMethod = topkMethod
        self.nGroup = nGroup
        self.topkGroup = topkGroup
        self.numExpertsPerTok = numExpertsPerTok
        self.moeLayerFreq = moeLayerFreq
        self.firstKDenseReplace = firstKDenseReplace
        self.normTopkProb = normTopkProb
        self.scoringFunc = modelType == .deepseekV3 ? .sigmoid : .softmax
        self.auxLossAlpha = auxLossAlpha
        self.seqAux = true
        self.hiddenAct = "silu"
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.initializerRange = 0.02
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling
        self.attentionBias = false
        self.tieWordEmbeddings = false
    }

    package init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func req<T: Decodable>(_ k: CodingKeys) throws -> T { try c.decode(T.self, forKey: k) }
        func opt<T: Decodable>(_ k: CodingKeys, _ d: T) throws -> T { try c.decodeIfPresent(T.self, forKey: k) ?? d }
        let type: String = try opt(.modelType, "deepseek_v2")
        guard let modelType = ModelType(rawValue: type) else {
            throw ConfigError(key: "model_type", "is \(quoted(type)); expected \"deepseek_v2\" or \"deepseek_v3\"")
        }
        self.modelType = modelType
        let v3 = modelType == .deepseekV3
        vocabSize = try req(.vocabSize)
        hiddenSize = try req(.hiddenSize)
        intermediateSize = try req(.intermediateSize)
        moeIntermediateSize = try opt(.moeIntermediateSize, 1407)
        numHiddenLayers = try req(.numHiddenLayers)
        numAttentionHeads = try req(.numAttentionHeads)
        if let kv = try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads), kv != numAttentionHeads {
            throw ConfigError(key: "num_key_value_heads", "is \(kv); MLA needs it equal to num_attention_heads (\(numAttentionHeads))")
        }
        nSharedExperts = try c.decodeIfPresent(Int.self, forKey: .nSharedExperts) ?? 0
        nRoutedExperts = try c.decodeIfPresent(Int.self, forKey: .nRoutedExperts) ?? 0
        routedScalingFactor = try opt(.routedScalingFactor, 1.0)
        kvLoraRank = try req(.kvLoraRank)
        qLoraRank = try c.decodeIfPresent(Int.self, forKey: .qLoraRank)
        qkRopeHeadDim = try req(.qkRopeHeadDim)
        vHeadDim = try req(.vHeadDim)
        qkNopeHeadDim = try req(.qkNopeHeadDim)
        // transformers' V3 config has no topk_method or scoring_func: V3 implies noaux_tc + sigmoid.
        let method: String = try opt(.topkMethod, v3 ? "noaux_tc" : "greedy")
        guard let topkMethod = TopKMethod(rawValue: method) else {
            throw ConfigError(key: "topk_method", "is \(quoted(method)); allowed: \"greedy\", \"group_limited_greedy\" (V2), \"noaux_tc\" (V3)")
        }
        self.topkMethod = topkMethod
        nGroup = try c.decodeIfPresent(Int.self, forKey: .nGroup) ?? 1
        topkGroup = try c.decodeIfPresent(Int.self, forKey: .topkGroup) ?? 1
        numExpertsPerTok = try c.decodeIfPresent(Int.self, forKey: .numExpertsPerTok) ?? 0
        moeLayerFreq = try opt(.moeLayerFreq, 1)
        firstKDenseReplace = try opt(.firstKDenseReplace, 0)
        normTopkProb = try opt(.normTopkProb, false)
        let scoring: String = try opt(.scoringFunc, v3 ? "sigmoid" : "softmax")
        guard let scoringFunc = ScoringFunction(rawValue: scoring) else {
            throw ConfigError(key: "scoring_func", "is \(quoted(scoring)); allowed: \"softmax\" (V2), \"sigmoid\" (V3)")
        }
        self.scoringFunc = scoringFunc
        auxLossAlpha = try opt(.auxLossAlpha, 0.001)
        seqAux = try opt(.seqAux, true)
        hiddenAct = try opt(.hiddenAct, "silu")
        maxPositionEmbeddings = try opt(.maxPositionEmbeddings, 2048)
        initializerRange = try opt(.initializerRange, 0.02)
        rmsNormEps = try opt(.rmsNormEps, 1e-6)
        attentionBias = try opt(.attentionBias, false)
        tieWordEmbeddings = try opt(.tieWordEmbeddings, false)
        ropeInterleave = try opt(.ropeInterleave, true)
        numNextnPredictLayers = try c.decodeIfPresent(Int.self, forKey: .numNextnPredictLayers)
            ?? c.decodeIfPresent(Int.self, forKey: .numMtpLayers) ?? 0
        let architectures = (try? c.decodeIfPresent([String].self, forKey: .architectures)) ?? nil
        if architectures?.first?.hasSuffix("ForSequenceClassification") == true {
            // transformers' default is two labels; a reward model has one.
            let labels = (try? c.decodeIfPresent([String: String].self, forKey: .id2label))??.count ?? 2
            guard labels == 1 else {
                throw ConfigError(key: "id2label", "has \(labels) labels; DeepTrain reads sequence classifiers with one (reward models)")
            }
            numLabels = 1
            numNextnPredictLayers = 0  // transformers' classifiers carry no multi-token prediction
        }
        // DeepSeek's release: rope_theta and rope_scaling at the top level. transformers 5:
        // rope_parameters with rope_type and rope_theta inside.
        if let params = try c.decodeIfPresent(RopeParameters.self, forKey: .ropeParameters) {
            let topTheta: Double = try opt(.ropeTheta, 10_000)
            ropeTheta = params.ropeTheta ?? topTheta
            ropeScaling = params.scaling.type == "default" ? nil : params.scaling
        } else {
            ropeTheta = try opt(.ropeTheta, 10_000)
            ropeScaling = try c.decodeIfPresent(RopeScaling.self, forKey: .ropeScaling)
        }
    }

    struct RopeParameters: Decodable {
        let ropeTheta: Double?
        let scaling: RopeScaling
        enum K: String, CodingKey { case ropeTheta = "rope_theta" }
        init(from decoder: Decoder) throws {
            ropeTheta = try decoder.container(keyedBy: K.self).decodeIfPresent(Double.self, forKey: .ropeTheta)
            scaling = try RopeScaling(from: decoder)
        }
    }

    package func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        // What transformers' Auto classes and TRL read to pick the model class.
        try c.encode([(isV3 ? "DeepseekV3" : "DeepseekV2") + (isRewardModel ? "ForSequenceClassification" : "ForCausalLM")],
                     forKey: .architectures)
        if let numLabels {
            try c.encode(Dictionary(uniqueKeysWithValues: (0..<numLabels).map { ("\($0)", "LABEL_\($0)") }), forKey: .id2label)
            try c.encode(Dictionary(uniqueKeysWithValues: (0..<numLabels).map { ("LABEL_\($0)", $0) }), forKey: .label2id)
        }
        try c.encode(modelType, forKey: .modelType)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(moeIntermediateSize, forKey: .moeIntermediateSize)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(numAttentionHeads, forKey: .numKeyValueHeads)
        try c.encode(nSharedExperts, forKey: .nSharedExperts)
        try c.encode(nRoutedExperts, forKey: .nRoutedExperts)
        try c.encode(routedScalingFactor, forKey: .routedScalingFactor)
        try c.encode(kvLoraRank, forKey: .kvLoraRank)
        try c.encode(qLoraRank, forKey: .qLoraRank)  // null for V2-Lite, as the release writes it
        try c.encode(qkRopeHeadDim, forKey: .qkRopeHeadDim)
        try c.encode(vHeadDim, forKey: .vHeadDim)
        try c.encode(qkNopeHeadDim, forKey: .qkNopeHeadDim)
        try c.encode(topkMethod, forKey: .topkMethod)
        try c.encode(nGroup, forKey: .nGroup)
        try c.encode(topkGroup, forKey: .topkGroup)
        try c.encode(numExpertsPerTok, forKey: .numExpertsPerTok)
        try c.encode(moeLayerFreq, forKey: .moeLayerFreq)
        try c.encode(firstKDenseReplace, forKey: .firstKDenseReplace)
        try c.encode(normTopkProb, forKey: .normTopkProb)
        try c.encode(scoringFunc, forKey: .scoringFunc)
        try c.encode(auxLossAlpha, forKey: .auxLossAlpha)
        try c.encode(seqAux, forKey: .seqAux)
        try c.encode(hiddenAct, forKey: .hiddenAct)
        try c.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encode(initializerRange, forKey: .initializerRange)
        try c.encode(rmsNormEps, forKey: .rmsNormEps)
        try c.encode(ropeTheta, forKey: .ropeTheta)
        try c.encode(ropeScaling, forKey: .ropeScaling)
        try c.encode(attentionBias, forKey: .attentionBias)
        try c.encode(tieWordEmbeddings, forKey: .tieWordEmbeddings)
        if isV3 {
            try c.encode(ropeInterleave, forKey: .ropeInterleave)
            try c.encode(numNextnPredictLayers, forKey: .numNextnPredictLayers)
        }
    }

    // MARK: derived

    package var qHeadDim: Int { qkNopeHeadDim + qkRopeHeadDim }
    package var isV3: Bool { modelType == .deepseekV3 }
    /// V3's gate multiplies by routed_scaling_factor after normalising; V2's code only when it
    /// does not normalise.
    package var scalesAfterNormalising: Bool { isV3 }
    package var hasMoE: Bool { nRoutedExperts > 0 }

    /// Whether decoder layer `l` uses DeepSeekMoE (otherwise a dense SwiGLU MLP).
    package func isMoELayer(_ l: Int) -> Bool {
        hasMoE && l >= firstKDenseReplace && l % moeLayerFreq == 0
    }

    /// The softmax scale of MLA: (d_nope + d_rope)^−½ · m², m = 0.1·mscale_all_dim·ln(factor) + 1.
    package var softmaxScale: Double {
        var s = 1 / Double(qHeadDim).squareRoot()
        if let r = ropeScaling, r.mscaleAllDim != 0 {
            let m = yarnMscale(factor: r.factor, mscale: r.mscaleAllDim)
            s *= m * m
        }
        return s
    }

    /// Rejects values this implementation does not support, naming the key and the allowed values.
    package func validate(source: String = "config") throws {
        func fail(_ key: String, _ msg: String) throws -> Never { throw ConfigError(source: source, key: key, msg) }
        let positive: [(String, Int)] = [("vocab_size", vocabSize), ("hidden_size", hiddenSize), ("num_hidden_layers", numHiddenLayers),
                                         ("num_attention_heads", numAttentionHeads), ("kv_lora_rank", kvLoraRank),
                                         ("qk_rope_head_dim", qkRopeHeadDim), ("qk_nope_head_dim", qkNopeHeadDim),
                                         ("v_head_dim", vHeadDim), ("intermediate_size", intermediateSize),
                                         ("max_position_embeddings", maxPositionEmbeddings)]
        for (k, v) in positive where v <= 0 { try fail(k, "is \(v); expected a positive integer") }
        if let q = qLoraRank, q <= 0 { try fail("q_lora_rank", "is \(q); expected a positive integer or null (plain q_proj)") }
        try checkLimits(fail)
        if qkRopeHeadDim % 2 != 0 { try fail("qk_rope_head_dim", "is \(qkRopeHeadDim); rotary embedding needs an even size") }
        if numNextnPredictLayers < 0 { try fail("num_nextn_predict_layers", "is \(numNextnPredictLayers); expected 0 or more") }
        if !isV3 && !ropeInterleave { try fail("rope_interleave", "is false; DeepSeek-V2 stores rope dimensions interleaved (allowed: true)") }
        if hiddenAct != "silu" { try fail("hidden_act", "is \(quoted(hiddenAct)); allowed: \"silu\"") }
        if attentionBias { try fail("attention_bias", "is true; DeepSeek-V2 has no attention biases (allowed: false)") }
        if tieWordEmbeddings { try fail("tie_word_embeddings", "is true; allowed: false (DeepSeek-V2 unties lm_head)") }
        if let r = ropeScaling {
            if r.type != "yarn" { try fail("rope_scaling.type", "is \(quoted(r.type)); allowed: \"yarn\" (or no rope_scaling)") }
            if r.factor < 1 { try fail("rope_scaling.factor", "is \(r.factor); expected ≥ 1") }
            if r.originalMaxPositionEmbeddings <= 0 { try fail("rope_scaling.original_max_position_embeddings", "must be positive") }
        }
        guard hasMoE else { return }
        if moeIntermediateSize <= 0 { try fail("moe_intermediate_size", "is \(moeIntermediateSize); expected a positive integer") }
        if nSharedExperts < 0 { try fail("n_shared_experts", "is \(nSharedExperts); expected 0 or more") }
        if moeLayerFreq < 1 { try fail("moe_layer_freq", "is \(moeLayerFreq); expected ≥ 1") }
        if firstKDenseReplace < 0 { try fail("first_k_dense_replace", "is \(firstKDenseReplace); expected ≥ 0") }
        if numExpertsPerTok < 1 || numExpertsPerTok > nRoutedExperts {
            try fail("num_experts_per_tok", "is \(numExpertsPerTok); expected 1...\(nRoutedExperts) (n_routed_experts)")
        }
        if nGroup < 1 || nRoutedExperts % nGroup != 0 {
            try fail("n_group", "is \(nGroup); expected a divisor of n_routed_experts (\(nRoutedExperts))")
        }
        switch topkMethod {
        case .greedy:
            break
        case .noauxTC:
            if scoringFunc != .sigmoid { try fail("scoring_func", "is \(quoted(scoringFunc.rawValue)); topk_method \"noaux_tc\" needs \"sigmoid\"") }
            if nRoutedExperts / nGroup < 2 {
                try fail("n_group", "is \(nGroup); noaux_tc ranks groups by their two best experts, so each group needs at least 2 of the \(nRoutedExperts) experts")
            }
            fallthrough
        case .groupLimitedGreedy:
            if topkGroup < 1 || topkGroup > nGroup { try fail("topk_group", "is \(topkGroup); expected 1...\(nGroup) (n_group)") }
            let reachable = topkGroup * (nRoutedExperts / nGroup)
            if numExpertsPerTok > reachable {
                try fail("num_experts_per_tok", "is \(numExpertsPerTok), more than the \(reachable) experts in topk_group = \(topkGroup) of \(nGroup) groups")
            }
        }
    }

    /// Every size bounded before anything is allocated from it (`ConfigLimits`), and every
    /// float finite: a config comes from a download.
    func checkLimits(_ fail: (String, String) throws -> Never) throws {
        let sizes: [(String, Int, Int)] = [
            ("vocab_size", vocabSize, ConfigLimits.vocabSize), ("hidden_size", hiddenSize, ConfigLimits.hiddenSize),
            ("intermediate_size", intermediateSize, ConfigLimits.intermediateSize),
            ("moe_intermediate_size", moeIntermediateSize, ConfigLimits.intermediateSize),
            ("num_hidden_layers", numHiddenLayers, ConfigLimits.layers), ("num_attention_heads", numAttentionHeads, ConfigLimits.heads),
            ("n_routed_experts", nRoutedExperts, ConfigLimits.experts), ("n_shared_experts", nSharedExperts, ConfigLimits.sharedExperts),
            ("kv_lora_rank", kvLoraRank, ConfigLimits.loraRank), ("q_lora_rank", qLoraRank ?? 1, ConfigLimits.loraRank),
            ("qk_rope_head_dim", qkRopeHeadDim, ConfigLimits.headDim), ("qk_nope_head_dim", qkNopeHeadDim, ConfigLimits.headDim),
            ("v_head_dim", vHeadDim, ConfigLimits.headDim), ("max_position_embeddings", maxPositionEmbeddings, ConfigLimits.positions),
            ("num_nextn_predict_layers", numNextnPredictLayers, ConfigLimits.mtpDepths), ("moe_layer_freq", moeLayerFreq, ConfigLimits.layers),
            ("first_k_dense_replace", firstKDenseReplace, ConfigLimits.layers), ("n_group", nGroup, ConfigLimits.experts),
            ("topk_group", topkGroup, ConfigLimits.experts), ("num_experts_per_tok", numExpertsPerTok, ConfigLimits.experts),
        ]
        for (key, value, limit) in sizes where value > limit {
            try fail(key, "is \(value); DeepTrain reads at most \(limit) (docs/checkpoints.md, \"Limits\")")
        }
        let floats: [(String, Double)] = [("routed_scaling_factor", routedScalingFactor), ("aux_loss_alpha", auxLossAlpha),
                                          ("initializer_range", initializerRange), ("rms_norm_eps", rmsNormEps), ("rope_theta", ropeTheta)]
        for (key, value) in floats where !value.isFinite { try fail(key, "is \(value); expected a finite number") }
        if rmsNormEps <= 0 { try fail("rms_norm_eps", "is \(rmsNormEps); expected a positive number") }
        if ropeTheta <= 0 { try fail("rope_theta", "is \(ropeTheta); expected a positive number") }
        if let r = ropeScaling {
            let values = [("factor", r.factor), ("beta_fast", r.betaFast), ("beta_slow", r.betaSlow), ("mscale", r.mscale), ("mscale_all_dim", r.mscaleAllDim)]
            for (key, value) in values where !value.isFinite { try fail("rope_scaling.\(key)", "is \(value); expected a finite number") }
            if r.factor > ConfigLimits.ropeFactor { try fail("rope_scaling.factor", "is \(r.factor); at most \(ConfigLimits.ropeFactor)") }
            if r.originalMaxPositionEmbeddings > ConfigLimits.positions {
                try fail("rope_scaling.original_max_position_embeddings", "is \(r.originalMaxPositionEmbeddings); at most \(ConfigLimits.positions)")
            }
        }
    }

    /// Reads and validates a Hugging Face `config.json`.
    package static func load(_ path: String) throws -> DeepSeekConfig {
        let data: Data
        do { data = try readBoundedFile(path, limit: ConfigLimits.fileBytes, what: "a config.json") } catch let e as BoundedFileError {
            throw ConfigError(source: path, key: "(file)", e.message)
        }
        let config: DeepSeekConfig
        do {
            config = try JSONDecoder().decode(DeepSeekConfig.self, from: data)
        } catch let e as ConfigError {
            throw ConfigError(source: path, key: e.key, e.message)
        } catch let DecodingError.keyNotFound(key, ctx) {
            throw ConfigError(source: path, key: (ctx.codingPath + [key]).map(\.stringValue).joined(separator: "."), "is missing")
        } catch let DecodingError.typeMismatch(type, ctx) {
            throw ConfigError(source: path, key: ctx.codingPath.map(\.stringValue).joined(separator: "."), "expected \(type)")
        } catch let DecodingError.valueNotFound(type, ctx) {
            throw ConfigError(source: path, key: ctx.codingPath.map(\.stringValue).joined(separator: "."), "is null; expected \(type)")
        } catch let DecodingError.dataCorrupted(ctx) {
            throw ConfigError(source: path, key: ctx.codingPath.map(\.stringValue).joined(separator: ".").isEmpty ? "(json)" : ctx.codingPath.map(\.stringValue).joined(separator: "."),
                              "is not valid JSON: \(ctx.underlyingError.map { "\($0)" } ?? ctx.debugDescription)")
        }
        try config.validate(source: path)
        return config
    }

    package func jsonData() -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return Self.floatsWithPoint(try! enc.encode(self))
    }

    /// The config's float fields. JSONEncoder writes 1.0 as `1`, and transformers 5 validates
    /// config.json strictly: `"routed_scaling_factor": 1` is refused as an int.
    static let floatKeys: Set<String> = [
        "routed_scaling_factor", "aux_loss_alpha", "initializer_range", "rms_norm_eps", "rope_theta", "factor",
        "beta_fast", "beta_slow", "mscale", "mscale_all_dim", "attention_dropout",
    ]

    static func floatsWithPoint(_ data: Data) -> Data {
        let lines = String(decoding: data, as: UTF8.self).components(separatedBy: "\n").map { line -> String in
            guard let colon = line.range(of: "\" : "), let keyStart = line.firstIndex(of: "\"") else { return line }
            let key = String(line[line.index(after: keyStart)..<colon.lowerBound])
            guard floatKeys.contains(key) else { return line }
            var value = String(line[colon.upperBound...])
            let comma = value.hasSuffix(",")
            if comma { value.removeLast() }
            guard Int(value) != nil else { return line }
            return String(line[..<colon.upperBound]) + value + ".0" + (comma ? "," : "")
        }
        return Data(lines.joined(separator: "\n").utf8)
    }
}

/// yarn_get_mscale of DeepSeek's code: 0.1·m·ln(factor) + 1 for factor > 1, else 1.
package func yarnMscale(factor: Double, mscale: Double) -> Double {
    factor <= 1 ? 1 : 0.1 * mscale * Foundation.log(factor) + 1
}

/// The largest sizes a config may declare: about 16× the largest published DeepSeek model
/// (V3: vocabulary 129,280, hidden 7,168, 61 layers, 128 heads, 256 routed experts of width
/// 2,048, dense width 18,432, 163,840 positions). Bounded dimensions keep every parameter and
/// FLOP count of `deeptrain plan` within Int64, and a downloaded config from asking for more.
package enum ConfigLimits {
    package static let vocabSize = 4_194_304
    package static let hiddenSize = 65_536
    package static let intermediateSize = 262_144
    package static let layers = 1_024
    package static let heads = 1_024
    package static let experts = 4_096
    package static let sharedExperts = 64
    package static let loraRank = 65_536
    package static let headDim = 4_096
    package static let positions = 16_777_216
    package static let mtpDepths = 16
    package static let ropeFactor = 1_024.0
    /// config.json itself (a published one is about 2 KB).
    package static let fileBytes = 1 << 20
}

extension ConfigError: InputError {}
