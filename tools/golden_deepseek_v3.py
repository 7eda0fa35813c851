#!/usr/bin/env python3
"""Golden values for DeepTrain's DeepSeek-V3 support, from transformers' own
`DeepseekV3ForCausalLM` (sigmoid scores, `noaux_tc` selection with `e_score_correction_bias`,
node-limited groups ranked by their two best biased scores, weights normalised then scaled by
`routed_scaling_factor`, `rope_interleave`), saved with `save_pretrained` as users get it.

Run by hand, not in CI (see tools/golden_ops.py for the venv):
    tools/.venv/bin/pip install torch==2.13.0+cpu transformers==5.23.0 safetensors numpy
    tools/.venv/bin/python tools/golden_deepseek_v3.py Tests/Fixtures/deepseek_v3

Per case, <case>/ holds what save_pretrained wrote (config.json, model.safetensors, ...),
input.safetensors (input_ids int64 [B, T]) and expected.safetensors with the tensors of
docs/design.md §5: logits, loss, hidden.* (embeddings, after each layer, after the final norm),
route.<l>.router_logits / topk_idx (sorted by id) / topk_weight (after scaling), and
grad.<name> under the names the file uses.

The case `release_mtp` is the DeepSeek release layout of the first case: the classic
config.json keys (`topk_method: noaux_tc`, `scoring_func: sigmoid`, `rope_scaling` at the top
level, `num_nextn_predict_layers: 1`) and the multi-token-prediction module stored as layer
`num_hidden_layers` (`enorm`, `hnorm`, `eh_proj`, a decoder block, `shared_head.norm`, and the
release's copies `embed_tokens` / `shared_head.head`). transformers has no MTP module, so its
expected `mtp_loss` comes from the independent reference below: depth 1 combines
RMSNorm(embedding of token t+1) and RMSNorm(the main model's final normed hidden state at t)
as eh_proj([e; h]) (embedding first, as the released weights are used), runs the block and
predicts token t+2 with shared_head.norm and the shared lm_head.
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

torch.set_default_dtype(torch.float32)

BASE = dict(
    vocab_size=64, hidden_size=32, intermediate_size=48, moe_intermediate_size=16, num_hidden_layers=3,
    num_attention_heads=2, num_key_value_heads=2, n_shared_experts=1, n_routed_experts=8,
    routed_scaling_factor=2.5, kv_lora_rank=16, qk_rope_head_dim=8, v_head_dim=12, qk_nope_head_dim=8,
    n_group=4, topk_group=2, num_experts_per_tok=3, first_k_dense_replace=1, max_position_embeddings=64,
    rms_norm_eps=1e-6, initializer_range=0.02, tie_word_embeddings=False, attention_bias=False,
    num_nextn_predict_layers=0,
)

YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 16,
        "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 0.707, "mscale_all_dim": 0.707}

CASES = {
    # q_lora, interleaved rope dims (DeepSeek's layout), YaRN in rope_parameters, normalised top-3
    # over 2 of 4 groups.
    "interleave_yarn_norm": dict(q_lora_rank=12, rope_interleave=True, rope_parameters=YARN, norm_topk_prob=True),
    # plain q_proj, rotate-half rope dims, no YaRN, unnormalised top-2 over 1 of 2 groups.
    "plain_q_half_rope": dict(q_lora_rank=None, rope_interleave=False, norm_topk_prob=False, n_group=2,
                              topk_group=1, num_experts_per_tok=2,
                              rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
}


def randomize(model, seed):
    # Larger than the init's 0.02 so that routing and attention are far from uniform.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            elif name.endswith("mlp.gate.weight"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(0.15 * torch.randn(b.shape, generator=g))


def run(model, ids):
    hidden, routes, hooks = [], {}, []
    layers = model.model.layers
    hooks.append(model.model.embed_tokens.register_forward_hook(lambda m, i, o: hidden.append(o)))
    for l, layer in enumerate(layers):
        hooks.append(layer.register_forward_hook(lambda m, i, o: hidden.append(o[0] if isinstance(o, tuple) else o)))
        if hasattr(layer.mlp, "gate"):
            def grab(m, i, o, l=l):
                logits, w, idx = o
                order = torch.argsort(idx, dim=-1)
                routes[l] = (logits, torch.gather(idx, 1, order), torch.gather(w, 1, order))
            hooks.append(layer.mlp.gate.register_forward_hook(grab))
    hooks.append(model.model.norm.register_forward_hook(lambda m, i, o: hidden.append(o)))
    logits = model(input_ids=ids).logits
    for h in hooks:
        h.remove()
    return logits, hidden, routes


def rms(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def main(out_dir):
    B, T = 2, 24
    for i, (name, over) in enumerate(CASES.items()):
        cfg = DeepseekV3Config(**dict(BASE, **over))
        cfg._attn_implementation = "eager"
        torch.manual_seed(0)
        model = DeepseekV3ForCausalLM(cfg).float()
        randomize(model, 3000 + i)
        ids = torch.randint(0, cfg.vocab_size, (B, T), generator=torch.Generator().manual_seed(91 + i))
        logits, hidden, routes = run(model, ids)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, cfg.vocab_size), ids[:, 1:].reshape(-1))
        loss.backward()

        # The bias must change the routing of some tokens, or the case tests nothing.
        with torch.no_grad():
            saved = {n: b.clone() for n, b in model.named_buffers() if n.endswith("e_score_correction_bias")}
            for n, b in model.named_buffers():
                if n in saved:
                    b.zero_()
            _, _, unbiased = run(model, ids)
            for n, b in model.named_buffers():
                if n in saved:
                    b.copy_(saved[n])
        assert any(not torch.equal(routes[l][1], unbiased[l][1]) for l in routes), f"{name}: bias changes no routing"

        d = os.path.join(out_dir, name)
        os.makedirs(d, exist_ok=True)
        model.save_pretrained(d, safe_serialization=True)
        on_disk = load_file(os.path.join(d, "model.safetensors"))
        grads = {}
        for pname, p in model.named_parameters():
            g = p.grad
            if pname.endswith("experts.gate_up_proj"):
                pre, inter = pname[: -len("gate_up_proj")], g.shape[1] // 2
                for e in range(g.shape[0]):
                    grads[f"{pre}{e}.gate_proj.weight"] = g[e, :inter]
                    grads[f"{pre}{e}.up_proj.weight"] = g[e, inter:]
            elif pname.endswith("experts.down_proj"):
                pre = pname[: -len("down_proj")]
                for e in range(g.shape[0]):
                    grads[f"{pre}{e}.down_proj.weight"] = g[e]
            else:
                grads[pname] = g
        missing = set(grads) - set(on_disk)
        assert not missing, f"{name}: gradients for names not on disk: {sorted(missing)[:4]}"

        exp = {"logits": logits.detach(), "loss": loss.detach().reshape(1)}
        for j, hs in enumerate(hidden):
            exp[f"hidden.{j}"] = hs.detach()
        for l, (lg, idx, w) in routes.items():
            exp[f"route.{l}.router_logits"] = lg.detach()
            exp[f"route.{l}.topk_idx"] = idx.to(torch.int64)
            exp[f"route.{l}.topk_weight"] = w.detach()
            exp[f"route.{l}.unbiased_topk_idx"] = unbiased[l][1].to(torch.int64)
        for k, v in grads.items():
            exp[f"grad.{k}"] = v
        save_file({"input_ids": ids.to(torch.int64)}, os.path.join(d, "input.safetensors"))
        save_file({k: v.contiguous() for k, v in exp.items()}, os.path.join(d, "expected.safetensors"))
        print(f"{name}: loss {loss.item():.6f}, {len(on_disk)} tensors on disk")

        if i == 0:
            release(out_dir, d, model, cfg, ids, on_disk)


def release(out_dir, src, model, cfg, ids, on_disk):
    """The first case in DeepSeek's release layout, with an MTP module as layer L."""
    L, D, V = cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size
    g = torch.Generator().manual_seed(4242)
    tensors = dict(on_disk)
    mtp = f"model.layers.{L}."
    # The MTP block copies the last layer's shapes (a MoE block), with fresh values.
    for k, v in on_disk.items():
        if k.startswith(f"model.layers.{L - 1}."):
            nk = mtp + k[len(f"model.layers.{L - 1}."):]
            if k.endswith("e_score_correction_bias"):
                tensors[nk] = 0.15 * torch.randn(v.shape, generator=g)
            elif v.dim() == 1:
                tensors[nk] = 1 + 0.1 * torch.randn(v.shape, generator=g)
            elif k.endswith("mlp.gate.weight"):
                tensors[nk] = 0.5 * torch.randn(v.shape, generator=g)
            else:
                tensors[nk] = 0.1 * torch.randn(v.shape, generator=g)
    for n in ["enorm.weight", "hnorm.weight", "shared_head.norm.weight"]:
        tensors[mtp + n] = 1 + 0.1 * torch.randn(D, generator=g)
    tensors[mtp + "eh_proj.weight"] = 0.1 * torch.randn(D, 2 * D, generator=g)
    tensors[mtp + "embed_tokens.weight"] = on_disk["model.embed_tokens.weight"].clone()
    tensors[mtp + "shared_head.head.weight"] = on_disk["lm_head.weight"].clone()

    # Reference MTP loss: a V3 model of L + 1 layers runs layer L as the MTP block.
    with torch.no_grad():
        cfg1 = DeepseekV3Config(**dict(cfg.to_dict(), num_hidden_layers=L + 1))
        cfg1._attn_implementation = "eager"
        big = DeepseekV3ForCausalLM(cfg1).float()
        state = {}
        for k in big.state_dict():
            state[k] = model.state_dict()[k] if k in model.state_dict() else None
        # Load the MTP block's tensors (per-expert on disk) into the fused in-memory layout.
        blk = big.model.layers[L]
        for pname, p in blk.named_parameters():
            full = f"model.layers.{L}.{pname}"
            if pname.endswith("experts.gate_up_proj"):
                pre = full[: -len("gate_up_proj")]
                p.copy_(torch.stack([torch.cat([tensors[f"{pre}{e}.gate_proj.weight"], tensors[f"{pre}{e}.up_proj.weight"]])
                                     for e in range(cfg.n_routed_experts)]))
            elif pname.endswith("experts.down_proj"):
                pre = full[: -len("down_proj")]
                p.copy_(torch.stack([tensors[f"{pre}{e}.down_proj.weight"] for e in range(cfg.n_routed_experts)]))
            else:
                p.copy_(tensors[full])
        blk.mlp.gate.e_score_correction_bias.copy_(tensors[f"model.layers.{L}.mlp.gate.e_score_correction_bias"])

        _, hidden, _ = run(model, ids)
        h_main = hidden[-1]  # after the final norm
        emb = model.model.embed_tokens(ids)
        eps = cfg.rms_norm_eps
        B, T = ids.shape
        # Position t combines h_t and the embedding of token t+1; the last position has no t+1.
        e_next = emb[:, 1:]
        x = torch.cat([rms(e_next, tensors[mtp + "enorm.weight"], eps), rms(h_main[:, :-1], tensors[mtp + "hnorm.weight"], eps)], -1)
        x = x @ tensors[mtp + "eh_proj.weight"].T
        pos = torch.arange(T - 1)[None].expand(B, -1)
        cos, sin = big.model.rotary_emb(x, pos)
        mask = torch.full((T - 1, T - 1), float("-inf")).triu(1)[None, None]
        y = blk(x, attention_mask=mask, position_ids=pos, position_embeddings=(cos, sin))
        y = y[0] if isinstance(y, tuple) else y
        mtp_logits = rms(y, tensors[mtp + "shared_head.norm.weight"], eps) @ tensors["lm_head.weight"].T
        # Targets: token t+2 for position t (positions 0 ... T-3).
        mtp_loss = torch.nn.functional.cross_entropy(mtp_logits[:, :-1].reshape(-1, V), ids[:, 2:].reshape(-1))

    d = os.path.join(out_dir, "release_mtp")
    os.makedirs(d, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(d, "model.safetensors"))
    r = YARN
    release_cfg = {
        "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
        "vocab_size": V, "hidden_size": D, "intermediate_size": cfg.intermediate_size,
        "moe_intermediate_size": cfg.moe_intermediate_size, "num_hidden_layers": L,
        "num_nextn_predict_layers": 1, "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads, "n_shared_experts": cfg.n_shared_experts,
        "n_routed_experts": cfg.n_routed_experts, "ep_size": 1, "routed_scaling_factor": cfg.routed_scaling_factor,
        "kv_lora_rank": cfg.kv_lora_rank, "q_lora_rank": cfg.q_lora_rank, "qk_rope_head_dim": cfg.qk_rope_head_dim,
        "v_head_dim": cfg.v_head_dim, "qk_nope_head_dim": cfg.qk_nope_head_dim, "topk_method": "noaux_tc",
        "n_group": cfg.n_group, "topk_group": cfg.topk_group, "num_experts_per_tok": cfg.num_experts_per_tok,
        "moe_layer_freq": 1, "first_k_dense_replace": cfg.first_k_dense_replace, "norm_topk_prob": True,
        "scoring_func": "sigmoid", "hidden_act": "silu", "max_position_embeddings": cfg.max_position_embeddings,
        "initializer_range": 0.02, "rms_norm_eps": cfg.rms_norm_eps, "use_cache": True, "tie_word_embeddings": False,
        "rope_theta": r["rope_theta"], "attention_bias": False, "attention_dropout": 0.0,
        "rope_scaling": {"type": "yarn", "factor": r["factor"], "original_max_position_embeddings": r["original_max_position_embeddings"],
                         "beta_fast": r["beta_fast"], "beta_slow": r["beta_slow"], "mscale": r["mscale"],
                         "mscale_all_dim": r["mscale_all_dim"]},
        "torch_dtype": "bfloat16",
    }
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(release_cfg, f, indent=2)
    save_file({"input_ids": ids.to(torch.int64)}, os.path.join(d, "input.safetensors"))
    exp = load_file(os.path.join(src, "expected.safetensors"))
    exp = {k: v for k, v in exp.items() if not k.startswith("grad.")}
    exp["mtp_loss"] = mtp_loss.reshape(1)
    save_file({k: v.contiguous() for k, v in exp.items()}, os.path.join(d, "expected.safetensors"))
    print(f"release_mtp: mtp_loss {mtp_loss.item():.6f}, {len(tensors)} tensors")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "Tests/Fixtures/deepseek_v3")
