import Foundation
import Testing
@testable import DeepSeek
@testable import FileFormats

@Suite struct ConfigTests {
    /// `body` with the path of a config.json holding `json`, removed afterwards.
    func withFile<T>(_ json: String, _ body: (String) throws -> T) rethrows -> T {
        let p = FileManager.default.temporaryDirectory.appendingPathComponent("dt-config-\(UUID().uuidString).json").path
        FileManager.default.createFile(atPath: p, contents: Data(json.utf8))
        defer { try? FileManager.default.removeItem(atPath: p) }
        return try body(p)
    }

    func load(_ json: String) throws -> DeepSeekConfig { try withFile(json) { try DeepSeekConfig.load($0) } }

    /// A valid config.json with `overrides` replacing or adding keys (NSNull for null).
    func base(_ overrides: [String: Any] = [:], removing: [String] = []) -> String {
        var d: [String: Any] = [
            "model_type": "deepseek_v2", "vocab_size": 100, "hidden_size": 32, "intermediate_size": 64,
            "moe_intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
            "n_shared_experts": 1, "n_routed_experts": 8, "kv_lora_rank": 16, "q_lora_rank": NSNull(),
            "qk_rope_head_dim": 8, "v_head_dim": 8, "qk_nope_head_dim": 8, "topk_method": "group_limited_greedy",
            "n_group": 4, "topk_group": 2, "num_experts_per_tok": 2, "first_k_dense_replace": 1,
            "norm_topk_prob": false, "routed_scaling_factor": 1.0, "rms_norm_eps": 1e-6, "max_position_embeddings": 64,
            "torch_dtype": "bfloat16", "architectures": ["DeepseekV2ForCausalLM"],
        ]
        for (k, v) in overrides { d[k] = v }
        for k in removing { d[k] = nil }
        return String(decoding: try! JSONSerialization.data(withJSONObject: d), as: UTF8.self)
    }

    @Test func bothRopeFormatsReadTheSame() throws {
        let yarn: [String: Any] = ["factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32, "beta_slow": 1,
                                   "mscale": 0.707, "mscale_all_dim": 0.707]
        let release = try load(base(["rope_theta": 10000, "rope_scaling": yarn.merging(["type": "yarn"]) { a, _ in a }]))
        let t5 = try load(base(["head_dim": 8, "qk_head_dim": 16,
                                "rope_parameters": yarn.merging(["rope_type": "yarn", "rope_theta": 10000]) { a, _ in a }]))
        #expect(release == t5)
        #expect(release.ropeScaling?.factor == 40 && release.qLoraRank == nil)
        // m = 0.1·0.707·ln 40 + 1; scale = 16^-½ · m²
        let m = 0.1 * 0.707 * log(40.0) + 1
        #expect(abs(release.softmaxScale - 0.25 * m * m) < 1e-12)
    }

    func rejection(_ overrides: [String: Any]) -> String {
        do {
            _ = try load(base(overrides))
            return "accepted"
        } catch {
            return "\(error)"
        }
    }

    @Test func unsupportedValuesNameTheKeyAndTheAllowedValues() {
        let unknown = rejection(["topk_method": "greedy_v9"])
        #expect(unknown.contains("topk_method") && unknown.contains("group_limited_greedy") && unknown.contains("noaux_tc"), "\(unknown)")
        let noaux = rejection(["topk_method": "noaux_tc"])
        #expect(noaux.contains("scoring_func") && noaux.contains("sigmoid"), "\(noaux)")
        let tooMany = rejection(["num_experts_per_tok": 5])
        #expect(tooMany.contains("num_experts_per_tok") && tooMany.contains("topk_group"), "\(tooMany)")
        let kv = rejection(["kv_lora_rank": 0])
        #expect(kv.contains("kv_lora_rank") && kv.contains("positive"), "\(kv)")
        let scoring = rejection(["scoring_func": "tanh"])
        #expect(scoring.contains("scoring_func") && scoring.contains("softmax") && scoring.contains("sigmoid"), "\(scoring)")
        let interleave = rejection(["rope_interleave": false])
        #expect(interleave.contains("rope_interleave"), "\(interleave)")
        let groups = rejection(["n_group": 3])
        #expect(groups.contains("n_group"), "\(groups)")
        let missing = rejection(["hidden_size": NSNull()])
        #expect(missing.contains("hidden_size"), "\(missing)")
        let other = rejection(["model_type": "llama"])
        #expect(other.contains("model_type") && other.contains("deepseek_v2"), "\(other)")
    }

    /// V3's keys as DeepSeek's release writes them and as transformers 5 does (no topk_method or
    /// scoring_func: V3 implies noaux_tc and sigmoid; rope_parameters; num_mtp_layers).
    @Test func v3ConfigsInBothStylesReadTheSame() throws {
        let yarn: [String: Any] = ["factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32, "beta_slow": 1,
                                   "mscale": 1.0, "mscale_all_dim": 1.0]
        let v3: [String: Any] = ["model_type": "deepseek_v3", "n_group": 4, "topk_group": 2, "norm_topk_prob": true,
                                 "routed_scaling_factor": 2.5]
        let release = try load(base(v3.merging([
            "topk_method": "noaux_tc", "scoring_func": "sigmoid", "num_nextn_predict_layers": 1, "rope_theta": 10000,
            "rope_scaling": yarn.merging(["type": "yarn"]) { a, _ in a }, "ep_size": 1,
        ]) { _, b in b }))
        let t5d = v3.merging(["num_mtp_layers": 1, "rope_interleave": true, "head_dim": 8, "qk_head_dim": 16,
                              "rope_parameters": yarn.merging(["rope_type": "yarn", "rope_theta": 10000]) { a, _ in a }]) { _, b in b }
        let t5 = try load(base(t5d, removing: ["topk_method"]))
        #expect(release == t5)
        #expect(release.isV3 && release.topkMethod == .noauxTC && release.scoringFunc == .sigmoid)
        #expect(release.numNextnPredictLayers == 1 && release.ropeInterleave)
        // Written back, a V3 config says so.
        let back = try JSONDecoder().decode(DeepSeekConfig.self, from: release.jsonData())
        #expect(back == release)
    }

    @Test func malformedJSONNamesTheFile() {
        withFile("{\"vocab_size\": 12,") { path in
            do {
                _ = try DeepSeekConfig.load(path)
                Issue.record("accepted malformed JSON")
            } catch {
                #expect("\(error)".contains(path) && "\(error)".contains("JSON"), "\(error)")
            }
        }
    }

    @Test func presetsValidate() throws {
        for name in DeepSeekConfig.presetNames { try DeepSeekConfig.preset(name).validate() }
        #expect(throws: ConfigError.self) { try DeepSeekConfig.preset("v4") }
    }

    /// The names and shapes a streaming conversion checks files against are the built model's,
    /// in its order, without building its weights.
    @Test func parameterShapesAreTheModelsWithoutItsWeights() throws {
        var wide = DeepSeekConfig.tiny
        wide.qLoraRank = nil
        wide.nSharedExperts = 2
        for c in [DeepSeekConfig.tiny, .small, wide] {
            let built = DeepSeekForCausalLM(c, seed: 1).namedParameters().map { "\($0.0) \($0.1.shape)" }
            #expect(DeepSeekForCausalLM.parameterShapes(c).map { "\($0.name) \($0.shape)" } == built)
        }
        // Outside the shapes-only scope, parameters are initialised as before.
        let m = DeepSeekForCausalLM(.tiny, seed: 1)
        #expect(m.lm_head.weight.values.contains { $0 != 0 })
    }
}
