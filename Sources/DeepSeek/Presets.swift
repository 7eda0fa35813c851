/// Named model sizes: the released DeepSeek-V2, V2-Lite and V3 models and small ones for
/// tests, demos and benchmarks on a CPU.
extension DeepSeekConfig {
    package static let presetNames = ["tiny", "tiny-v3", "small", "v2-lite", "v2", "v3"]

    package static func preset(_ name: String) throws -> DeepSeekConfig {
        switch name {
        case "tiny": return .tiny
        case "small": return .small
        case "v2-lite": return .v2Lite
        case "v2": return .v2
        case "tiny-v3": return .tinyV3
        case "v3": return .v3
        default:
            throw ConfigError(source: "model", key: "preset", "\"\(name)\" is not a preset; allowed: \(presetNames.joined(separator: ", ")) or a path to config.json")
        }
    }

    /// Seconds-scale tests and the built-in demos: 3 layers (first dense), 8 routed experts in
    /// 4 groups, group-limited top-2 over 2 groups, YaRN ×2 over 64 positions.
    package static let tiny = DeepSeekConfig(
        vocabSize: 256, hiddenSize: 64, intermediateSize: 160, moeIntermediateSize: 48, numHiddenLayers: 3,
        numAttentionHeads: 4, nSharedExperts: 1, nRoutedExperts: 8, routedScalingFactor: 1.0,
        kvLoraRank: 32, qLoraRank: 48, qkRopeHeadDim: 8, vHeadDim: 16, qkNopeHeadDim: 16,
        topkMethod: .groupLimitedGreedy, nGroup: 4, topkGroup: 2, numExpertsPerTok: 2,
        firstKDenseReplace: 1, normTopkProb: false, auxLossAlpha: 0.003, maxPositionEmbeddings: 128,
        ropeScaling: RopeScaling(factor: 2, originalMaxPositionEmbeddings: 64))

    /// The benchmark MoE model of `bench train --model small` (docs/benchmarks.md).
    package static let small = DeepSeekConfig(
        vocabSize: 4096, hiddenSize: 256, intermediateSize: 1024, moeIntermediateSize: 256, numHiddenLayers: 8,
        numAttentionHeads: 8, nSharedExperts: 2, nRoutedExperts: 16, routedScalingFactor: 1.0,
        kvLoraRank: 64, qLoraRank: 128, qkRopeHeadDim: 16, vHeadDim: 32, qkNopeHeadDim: 32,
        topkMethod: .groupLimitedGreedy, nGroup: 4, topkGroup: 2, numExpertsPerTok: 2,
        firstKDenseReplace: 1, normTopkProb: false, auxLossAlpha: 0.003, maxPositionEmbeddings: 1024,
        ropeScaling: RopeScaling(factor: 4, originalMaxPositionEmbeddings: 256))

    /// DeepSeek-V2-Lite as released: 15.7B total, 2.4B activated.
    package static let v2Lite = DeepSeekConfig(
        vocabSize: 102_400, hiddenSize: 2048, intermediateSize: 10_944, moeIntermediateSize: 1408, numHiddenLayers: 27,
        numAttentionHeads: 16, nSharedExperts: 2, nRoutedExperts: 64, routedScalingFactor: 1.0,
        kvLoraRank: 512, qLoraRank: nil, qkRopeHeadDim: 64, vHeadDim: 128, qkNopeHeadDim: 128,
        topkMethod: .greedy, nGroup: 1, topkGroup: 1, numExpertsPerTok: 6,
        firstKDenseReplace: 1, normTopkProb: false, auxLossAlpha: 0.001, maxPositionEmbeddings: 163_840,
        ropeScaling: RopeScaling(factor: 40, originalMaxPositionEmbeddings: 4096))

    /// DeepSeek-V2 as released: 236B total, 21B activated.
    package static let v2 = DeepSeekConfig(
        vocabSize: 102_400, hiddenSize: 5120, intermediateSize: 12_288, moeIntermediateSize: 1536, numHiddenLayers: 60,
        numAttentionHeads: 128, nSharedExperts: 2, nRoutedExperts: 160, routedScalingFactor: 16.0,
        kvLoraRank: 512, qLoraRank: 1536, qkRopeHeadDim: 64, vHeadDim: 128, qkNopeHeadDim: 128,
        topkMethod: .groupLimitedGreedy, nGroup: 8, topkGroup: 3, numExpertsPerTok: 6,
        firstKDenseReplace: 1, normTopkProb: false, auxLossAlpha: 0.003, maxPositionEmbeddings: 163_840,
        ropeScaling: RopeScaling(factor: 40, originalMaxPositionEmbeddings: 4096))

    /// `tiny` with V3's router and one MTP depth: sigmoid scores, noaux_tc over 2 of 4 groups,
    /// weights normalised then × 2.5.
    package static let tinyV3 = DeepSeekConfig(
            vocabSize: 256, hiddenSize: 64, intermediateSize: 160, moeIntermediateSize: 48, numHiddenLayers: 3,
            numAttentionHeads: 4, nSharedExperts: 1, nRoutedExperts: 8, routedScalingFactor: 2.5,
            kvLoraRank: 32, qLoraRank: 48, qkRopeHeadDim: 8, vHeadDim: 16, qkNopeHeadDim: 16,
            topkMethod: .noauxTC, nGroup: 4, topkGroup: 2, numExpertsPerTok: 2,
            firstKDenseReplace: 1, normTopkProb: true, auxLossAlpha: 0.0001, maxPositionEmbeddings: 128,
            ropeScaling: RopeScaling(factor: 2, originalMaxPositionEmbeddings: 64, mscale: 1, mscaleAllDim: 1),
            modelType: .deepseekV3, numNextnPredictLayers: 1)

    /// DeepSeek-V3 as released (config.json of DeepSeek-V3): 671B total, 37B activated, plus
    /// one MTP module (layer 61).
    package static let v3 = DeepSeekConfig(
            vocabSize: 129_280, hiddenSize: 7168, intermediateSize: 18_432, moeIntermediateSize: 2048, numHiddenLayers: 61,
            numAttentionHeads: 128, nSharedExperts: 1, nRoutedExperts: 256, routedScalingFactor: 2.5,
            kvLoraRank: 512, qLoraRank: 1536, qkRopeHeadDim: 64, vHeadDim: 128, qkNopeHeadDim: 128,
            topkMethod: .noauxTC, nGroup: 8, topkGroup: 4, numExpertsPerTok: 8,
            firstKDenseReplace: 3, normTopkProb: true, auxLossAlpha: 0.001, maxPositionEmbeddings: 163_840,
            ropeScaling: RopeScaling(factor: 40, originalMaxPositionEmbeddings: 4096, mscale: 1, mscaleAllDim: 1),
            modelType: .deepseekV3, numNextnPredictLayers: 1)
}
