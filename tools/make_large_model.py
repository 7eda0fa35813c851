"""A Hugging Face DeepSeek-V2 directory of random weights, as large as asked, for measuring
`deeptrain convert`'s memory on a model of gigabytes (docs/checkpoints.md).

    tools/.venv/bin/python tools/make_large_model.py OUT_DIR [--hidden 1024 --experts 32 ...]

Writes config.json (DeepTrain's keys, as `deeptrain convert` writes them) and shards of at most
--shard-mb megabytes with model.safetensors.index.json, tensor names as Hugging Face's
DeepSeek-V2 uses them. Values: normal(0, 0.02), float32.
"""
import argparse, json, os
import torch
from safetensors.torch import save_file

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--vocab", type=int, default=32000)
ap.add_argument("--hidden", type=int, default=1024)
ap.add_argument("--layers", type=int, default=4)
ap.add_argument("--heads", type=int, default=8)
ap.add_argument("--experts", type=int, default=32)
ap.add_argument("--moe-inter", type=int, default=2048)
ap.add_argument("--inter", type=int, default=4096)
ap.add_argument("--shard-mb", type=int, default=500)
a = ap.parse_args()

D, H, nope, rope, vdim, qlora, kvlora = a.hidden, a.heads, 64, 32, 64, 384, 256
cfg = {
    "model_type": "deepseek_v2", "vocab_size": a.vocab, "hidden_size": D, "intermediate_size": a.inter,
    "moe_intermediate_size": a.moe_inter, "num_hidden_layers": a.layers, "num_attention_heads": H,
    "num_key_value_heads": H, "n_shared_experts": 1, "n_routed_experts": a.experts, "routed_scaling_factor": 1.0,
    "kv_lora_rank": kvlora, "q_lora_rank": qlora, "qk_rope_head_dim": rope, "v_head_dim": vdim, "qk_nope_head_dim": nope,
    "topk_method": "group_limited_greedy", "n_group": 4, "topk_group": 2, "num_experts_per_tok": 4,
    "moe_layer_freq": 1, "first_k_dense_replace": 1, "norm_topk_prob": False, "scoring_func": "softmax",
    "aux_loss_alpha": 0.001, "seq_aux": True, "hidden_act": "silu", "max_position_embeddings": 4096,
    "initializer_range": 0.02, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "attention_bias": False,
    "tie_word_embeddings": False, "rope_scaling": None,
}

def shapes():
    yield "model.embed_tokens.weight", [a.vocab, D]
    for l in range(a.layers):
        p = f"model.layers.{l}."
        yield p + "input_layernorm.weight", [D]
        yield p + "post_attention_layernorm.weight", [D]
        yield p + "self_attn.q_a_proj.weight", [qlora, D]
        yield p + "self_attn.q_a_layernorm.weight", [qlora]
        yield p + "self_attn.q_b_proj.weight", [H * (nope + rope), qlora]
        yield p + "self_attn.kv_a_proj_with_mqa.weight", [kvlora + rope, D]
        yield p + "self_attn.kv_a_layernorm.weight", [kvlora]
        yield p + "self_attn.kv_b_proj.weight", [H * (nope + vdim), kvlora]
        yield p + "self_attn.o_proj.weight", [D, H * vdim]
        if l < 1:
            yield p + "mlp.gate_proj.weight", [a.inter, D]
            yield p + "mlp.up_proj.weight", [a.inter, D]
            yield p + "mlp.down_proj.weight", [D, a.inter]
        else:
            yield p + "mlp.gate.weight", [a.experts, D]
            for e in range(a.experts):
                yield p + f"mlp.experts.{e}.gate_proj.weight", [a.moe_inter, D]
                yield p + f"mlp.experts.{e}.up_proj.weight", [a.moe_inter, D]
                yield p + f"mlp.experts.{e}.down_proj.weight", [D, a.moe_inter]
            yield p + "mlp.shared_experts.gate_proj.weight", [a.moe_inter, D]
            yield p + "mlp.shared_experts.up_proj.weight", [a.moe_inter, D]
            yield p + "mlp.shared_experts.down_proj.weight", [D, a.moe_inter]
    yield "model.norm.weight", [D]
    yield "lm_head.weight", [a.vocab, D]

os.makedirs(a.out, exist_ok=True)
json.dump(cfg, open(os.path.join(a.out, "config.json"), "w"), indent=2)
g = torch.Generator().manual_seed(0)
shards, cur, size = [], {}, 0
for name, shape in shapes():
    t = torch.ones(shape) if len(shape) == 1 else torch.randn(shape, generator=g) * 0.02
    if size and size + t.numel() * 4 > a.shard_mb * 1_000_000:
        shards.append(cur); cur, size = {}, 0
    cur[name] = t; size += t.numel() * 4
    if len(shards) and not cur:
        pass
shards.append(cur)
weight_map, total = {}, 0
for i, s in enumerate(shards):
    f = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
    save_file(s, os.path.join(a.out, f), metadata={"format": "pt"})
    for n, t in s.items():
        weight_map[n] = f; total += t.numel() * 4
json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, open(os.path.join(a.out, "model.safetensors.index.json"), "w"), indent=2)
print(f"{a.out}: {total / 1e9:.2f} GB in {len(shards)} shards, largest tensor {max(t.numel() for s in shards for t in s.values()) * 4 / 1e6:.0f} MB")
