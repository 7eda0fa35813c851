import Foundation
import CHDF5
import Checkpoint
import DeepSeek

/// Where each target's inputs come from: files the repository already holds (fixtures,
/// recipes, templates), the committed corpus `Tests/Fuzz/corpus/<target>/`, and the inputs
/// that once crashed, hung or over-allocated, `Tests/Fuzz/regressions/<target>/`.
package enum FuzzSeeds {
    /// A DeepSeek-V2 model of a few hundred weights: its files are small seeds.
    package static let microConfig: DeepSeekConfig = {
        var c = DeepSeekConfig(vocabSize: 16, hiddenSize: 8, intermediateSize: 8, moeIntermediateSize: 4, numHiddenLayers: 2,
                                 numAttentionHeads: 1, nSharedExperts: 1, nRoutedExperts: 2, routedScalingFactor: 1, kvLoraRank: 4,
                                 qLoraRank: nil, qkRopeHeadDim: 2, vHeadDim: 2, qkNopeHeadDim: 2, topkMethod: .greedy, nGroup: 1,
                                 topkGroup: 1, numExpertsPerTok: 1, firstKDenseReplace: 1, normTopkProb: false, auxLossAlpha: 0.001,
                                 maxPositionEmbeddings: 16, ropeScaling: nil)
        c.seqAux = true
        return c
    }()

    /// Every input file of `target` under the repository `root`.
    package static func files(_ target: FuzzTarget, root: String) -> [String] {
        func under(_ dir: String, _ keep: (String) -> Bool = { _ in true }) -> [String] {
            let base = (root as NSString).appendingPathComponent(dir)
            guard let e = FileManager.default.enumerator(atPath: base) else { return [] }
            return e.compactMap { $0 as? String }.filter { !$0.hasPrefix(".") && keep($0) }.sorted()
                .map { (base as NSString).appendingPathComponent($0) }
                .filter { var d: ObjCBool = false; return FileManager.default.fileExists(atPath: $0, isDirectory: &d) && !d.boolValue }
        }
        let own = under("Tests/Fuzz/corpus/\(target.rawValue)") + under("Tests/Fuzz/regressions/\(target.rawValue)")
        switch target {
        case .safetensors: return own + under("Tests/Fixtures/deepseek", { $0.hasSuffix("input.safetensors") })
        case .safetensorsIndex, .hdf5: return own
        case .config: return own + under("Tests/Fixtures", { $0.hasSuffix("config.json") && !$0.hasSuffix("tokenizer_config.json") })
        case .tokenizer: return own + under("Tests/Fixtures/tokenizers", { $0.hasSuffix("tokenizer.json") })
        case .template: return own + under("tools/chat_templates", { $0.hasSuffix(".jinja") })
        case .recipe: return own + under("recipes", { $0.hasSuffix(".yaml") })
        case .jsonl: return own + under("recipes/data", { $0.hasSuffix(".jsonl") })
        case .preferences: return own
        }
    }

    /// Writes the generated seeds (files of the micro model) under `root`/Tests/Fuzz/corpus.
    package static func writeCorpus(root: String) throws {
        let corpus = (root as NSString).appendingPathComponent("Tests/Fuzz/corpus")
        func dir(_ t: FuzzTarget) throws -> String {
            let d = (corpus as NSString).appendingPathComponent(t.rawValue)
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            return d
        }
        let model = DeepSeekForCausalLM(microConfig, seed: 1, positions: 4)
        let scratch = try FuzzScratch()
        let one = (scratch.dir as NSString).appendingPathComponent("one"), two = (scratch.dir as NSString).appendingPathComponent("two")
        try HFDirectory.save(model, to: one, dtype: .bf16)
        try HFDirectory.save(model, to: two, shardBytes: 2_000)
        try FileManager.default.copyItem(atPath: "\(one)/model.safetensors", toPath: "\(try dir(.safetensors))/micro-bf16.safetensors")
        try FileManager.default.copyItem(atPath: "\(two)/model.safetensors.index.json", toPath: "\(try dir(.safetensorsIndex))/micro.index.json")
        try FileManager.default.copyItem(atPath: "\(one)/config.json", toPath: "\(try dir(.config))/micro.json")
        try CheckpointStore.save(model, tokenizerFiles: [("chat_template.jinja", Data("{{ messages[0].content }}".utf8))],
                                 to: "\(try dir(.hdf5))/micro.h5")
    }
}
