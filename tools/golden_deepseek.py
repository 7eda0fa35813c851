#!/usr/bin/env python3
"""Golden values for DeepTrain's DeepSeek-V2 model, from an independent PyTorch implementation
of the semantics of DeepSeek's own `modeling_deepseek.py` (the DeepSeek-V2 release), which
differ from transformers' native DeepseekV2 class: V2's gate renormalises the top-k weights only
when `norm_topk_prob` and otherwise multiplies them by `routed_scaling_factor`; group-limited
routing keeps the `topk_group` groups with the best single expert score; rope dimensions are
stored interleaved and de-interleaved before rotate-half RoPE; YaRN as in
DeepseekV2YarnRotaryEmbedding; MLA softmax scale × mscale(factor, mscale_all_dim)².

Run by hand, not in CI (see tools/golden_ops.py for the venv):
    tools/.venv/bin/pip install torch==2.13.0+cpu safetensors numpy
    tools/.venv/bin/python tools/golden_deepseek.py Tests/Fixtures/deepseek

For each case it writes <case>/config.json (Hugging Face keys), <case>/model.safetensors
(weights under HF names), <case>/input.safetensors (input_ids int64 [B, T]) and
<case>/expected.safetensors with the tensors of docs/design.md §5 (logits, loss, hidden.*, route.*,
grad.<name>) plus `aux_expert`: V2's sequence-level expert balance loss in training mode.
"""
import json
import math
import os
import sys

import torch
from safetensors.torch import save_file

torch.set_default_dtype(torch.float32)


def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def mscale_of(factor, m):
    return 1.0 if factor <= 1 else 0.1 * m * math.log(factor) + 1.0


def rope_tables(cfg, T):
    d = cfg["qk_rope_head_dim"]
    base = cfg["rope_theta"]
    r = cfg.get("rope_scaling")
    freq_extra = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    scale = 1.0
    if r:
        f = r["factor"]
        freq_inter = 1.0 / (f * base ** (torch.arange(0, d, 2, dtype=torch.float32) / d))

        def corr(rot):
            return (d * math.log(r["original_max_position_embeddings"] / (rot * 2 * math.pi))) / (2 * math.log(base))

        low = max(math.floor(corr(r["beta_fast"])), 0)
        high = min(math.ceil(corr(r["beta_slow"])), d - 1)
        if low == high:
            high += 0.001
        ramp = torch.clamp((torch.arange(d // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
        mask = 1.0 - ramp
        inv = freq_inter * (1 - mask) + freq_extra * mask
        scale = mscale_of(f, r["mscale"]) / mscale_of(f, r["mscale_all_dim"])
    else:
        inv = freq_extra
    t = torch.arange(T, dtype=torch.float32)
    freqs = torch.outer(t, inv)
    emb = torch.cat([freqs, freqs], -1)
    return emb.cos() * scale, emb.sin() * scale


def apply_rope(x, cos, sin):
    # x [B, H, T, d] with interleaved pairs; DeepSeek de-interleaves, then rotate-half.
    b, h, s, d = x.shape
    x = x.view(b, h, s, d // 2, 2).transpose(4, 3).reshape(b, h, s, d)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    rot = torch.cat([-x2, x1], -1)
    return x * cos[None, None] + rot * sin[None, None]


def mlp(p, pre, x):
    g = x @ p[pre + "gate_proj.weight"].T
    u = x @ p[pre + "up_proj.weight"].T
    return (torch.nn.functional.silu(g) * u) @ p[pre + "down_proj.weight"].T


def gate(cfg, p, pre, x):
    logits = x.float() @ p[pre + "gate.weight"].float().T
    scores = logits.softmax(-1, dtype=torch.float32)
    k = cfg["num_experts_per_tok"]
    if cfg["topk_method"] == "greedy":
        w, idx = torch.topk(scores, k, dim=-1, sorted=False)
    else:
        n, E = scores.shape
        g = cfg["n_group"]
        group_scores = scores.view(n, g, -1).max(-1).values
        gidx = torch.topk(group_scores, cfg["topk_group"], dim=-1, sorted=False)[1]
        gmask = torch.zeros_like(group_scores).scatter_(1, gidx, 1)
        smask = gmask.unsqueeze(-1).expand(n, g, E // g).reshape(n, -1)
        tmp = scores.masked_fill(~smask.bool(), 0.0)
        w, idx = torch.topk(tmp, k, dim=-1, sorted=False)
    if k > 1 and cfg["norm_topk_prob"]:
        w = w / (w.sum(-1, keepdim=True) + 1e-20)
    else:
        w = w * cfg["routed_scaling_factor"]
    return logits, scores, idx, w


def forward(cfg, p, ids, training_aux=False):
    B, T = ids.shape
    H = cfg["num_attention_heads"]
    nope, rope, vd = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    kvr = cfg["kv_lora_rank"]
    eps = cfg["rms_norm_eps"]
    cos, sin = rope_tables(cfg, T)
    scale = (nope + rope) ** -0.5
    r = cfg.get("rope_scaling")
    if r and r.get("mscale_all_dim"):
        m = mscale_of(r["factor"], r["mscale_all_dim"])
        scale = scale * m * m
    causal = torch.full((T, T), float("-inf")).triu(1)

    h = p["model.embed_tokens.weight"][ids]
    hidden = [h]
    routes = {}
    aux = torch.zeros(())
    for l in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{l}."
        x = rms_norm(h, p[pre + "input_layernorm.weight"], eps)
        a = pre + "self_attn."
        if cfg["q_lora_rank"] is None:
            q = x @ p[a + "q_proj.weight"].T
        else:
            q = rms_norm(x @ p[a + "q_a_proj.weight"].T, p[a + "q_a_layernorm.weight"], 1e-6) @ p[a + "q_b_proj.weight"].T
        q = q.view(B, T, H, nope + rope).transpose(1, 2)
        q_nope, q_pe = q.split([nope, rope], -1)
        ckv = x @ p[a + "kv_a_proj_with_mqa.weight"].T
        c, k_pe = ckv.split([kvr, rope], -1)
        k_pe = k_pe.view(B, T, 1, rope).transpose(1, 2)
        kv = (rms_norm(c, p[a + "kv_a_layernorm.weight"], 1e-6) @ p[a + "kv_b_proj.weight"].T)
        kv = kv.view(B, T, H, nope + vd).transpose(1, 2)
        k_nope, v = kv.split([nope, vd], -1)
        q_pe = apply_rope(q_pe, cos, sin)
        k_pe = apply_rope(k_pe, cos, sin)
        qs = torch.cat([q_nope, q_pe], -1)
        ks = torch.cat([k_nope, k_pe.expand(B, H, T, rope)], -1)
        att = (qs @ ks.transpose(2, 3)) * scale + causal
        att = att.softmax(-1, dtype=torch.float32)
        o = (att @ v).transpose(1, 2).reshape(B, T, H * vd)
        h = h + o @ p[a + "o_proj.weight"].T

        x = rms_norm(h, p[pre + "post_attention_layernorm.weight"], eps)
        is_moe = cfg["n_routed_experts"] and l >= cfg["first_k_dense_replace"] and l % cfg["moe_layer_freq"] == 0
        if is_moe:
            m = pre + "mlp."
            flat = x.reshape(B * T, -1)
            logits, scores, idx, w = gate(cfg, p, m, flat)
            y = torch.zeros_like(flat)
            for e in range(cfg["n_routed_experts"]):
                tok, slot = (idx == e).nonzero(as_tuple=True)
                if len(tok):
                    y = y.index_add(0, tok, mlp(p, m + f"experts.{e}.", flat[tok]) * w[tok, slot].unsqueeze(-1))
            if cfg["n_shared_experts"]:
                y = y + mlp(p, m + "shared_experts.", flat)
            h = h + y.view(B, T, -1)
            order = torch.argsort(idx, dim=-1)
            routes[l] = (logits, torch.gather(idx, 1, order), torch.gather(w, 1, order))
            if training_aux:
                # V2's seq_aux expert-level balance loss (MoEGate, training mode).
                K, E = cfg["num_experts_per_tok"], cfg["n_routed_experts"]
                ce = torch.zeros(B, E).scatter_add_(1, idx.view(B, -1), torch.ones(B, T * K)).div_(T * K / E)
                aux = aux + (ce * scores.view(B, T, -1).mean(1)).sum(1).mean() * cfg["aux_loss_alpha"]
        else:
            h = h + mlp(p, pre + "mlp.", x)
        hidden.append(h)
    h = rms_norm(h, p["model.norm.weight"], eps)
    hidden.append(h)
    logits = h @ p["lm_head.weight"].T
    return logits, hidden, routes, aux


def init_params(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    D, V, H = cfg["hidden_size"], cfg["vocab_size"], cfg["num_attention_heads"]
    nope, rope, vd = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    p = {}

    def mat(name, o, i, std=0.1):
        p[name] = torch.randn(o, i, generator=g) * std

    def vec(name, n):
        p[name] = 1 + 0.1 * torch.randn(n, generator=g)

    p["model.embed_tokens.weight"] = torch.randn(V, D, generator=g)
    for l in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{l}."
        vec(pre + "input_layernorm.weight", D)
        vec(pre + "post_attention_layernorm.weight", D)
        a = pre + "self_attn."
        if cfg["q_lora_rank"] is None:
            mat(a + "q_proj.weight", H * (nope + rope), D)
        else:
            mat(a + "q_a_proj.weight", cfg["q_lora_rank"], D)
            vec(a + "q_a_layernorm.weight", cfg["q_lora_rank"])
            mat(a + "q_b_proj.weight", H * (nope + rope), cfg["q_lora_rank"])
        mat(a + "kv_a_proj_with_mqa.weight", cfg["kv_lora_rank"] + rope, D)
        vec(a + "kv_a_layernorm.weight", cfg["kv_lora_rank"])
        mat(a + "kv_b_proj.weight", H * (nope + vd), cfg["kv_lora_rank"])
        mat(a + "o_proj.weight", D, H * vd)
        is_moe = l >= cfg["first_k_dense_replace"] and l % cfg["moe_layer_freq"] == 0
        m = pre + "mlp."
        if is_moe:
            mat(m + "gate.weight", cfg["n_routed_experts"], D, std=0.5)
            for e in range(cfg["n_routed_experts"]):
                for n, (o, i) in {"gate_proj": (cfg["moe_intermediate_size"], D), "up_proj": (cfg["moe_intermediate_size"], D),
                                  "down_proj": (D, cfg["moe_intermediate_size"])}.items():
                    mat(m + f"experts.{e}.{n}.weight", o, i)
            w = cfg["moe_intermediate_size"] * cfg["n_shared_experts"]
            mat(m + "shared_experts.gate_proj.weight", w, D)
            mat(m + "shared_experts.up_proj.weight", w, D)
            mat(m + "shared_experts.down_proj.weight", D, w)
        else:
            I = cfg["intermediate_size"]
            mat(m + "gate_proj.weight", I, D)
            mat(m + "up_proj.weight", I, D)
            mat(m + "down_proj.weight", D, I)
    vec("model.norm.weight", D)
    mat("lm_head.weight", V, D)
    return p


BASE = {
    "model_type": "deepseek_v2", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
    "moe_intermediate_size": 16, "num_hidden_layers": 3, "num_attention_heads": 2, "num_key_value_heads": 2,
    "n_shared_experts": 2, "n_routed_experts": 8, "kv_lora_rank": 16, "qk_rope_head_dim": 8,
    "v_head_dim": 12, "qk_nope_head_dim": 8, "moe_layer_freq": 1, "first_k_dense_replace": 1,
    "scoring_func": "softmax", "aux_loss_alpha": 0.001, "seq_aux": True, "hidden_act": "silu",
    "max_position_embeddings": 64, "initializer_range": 0.02, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
    "attention_bias": False, "tie_word_embeddings": False,
    "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16,
                     "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707},
}

CASES = {
    # q_lora on; group-limited routing with top-3 over 2 of 4 groups (differs from greedy);
    # routed_scaling_factor 2.5 (applied: no renormalisation); T = 24 > YaRN's original 16.
    "qlora_group_limited": dict(q_lora_rank=12, topk_method="group_limited_greedy", n_group=4, topk_group=2,
                                num_experts_per_tok=3, norm_topk_prob=False, routed_scaling_factor=2.5),
    # q_lora off (plain q_proj), greedy top-2 renormalised (scaling not applied, as V2's code).
    "plain_q_greedy_norm": dict(q_lora_rank=None, topk_method="greedy", n_group=1, topk_group=1,
                                num_experts_per_tok=2, norm_topk_prob=True, routed_scaling_factor=3.0),
}


def main(out_dir):
    B, T = 2, 24
    for i, (name, over) in enumerate(CASES.items()):
        cfg = dict(BASE, **over)
        params = init_params(cfg, 1000 + i)
        g = torch.Generator().manual_seed(77 + i)
        ids = torch.randint(0, cfg["vocab_size"], (B, T), generator=g)
        leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        logits, hidden, routes, _ = forward(cfg, leaves, ids)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, cfg["vocab_size"]), ids[:, 1:].reshape(-1))
        loss.backward()
        with torch.no_grad():
            _, _, _, aux = forward(cfg, params, ids, training_aux=True)
        if over["topk_method"] == "group_limited_greedy":
            # The case must exercise a routing that differs from plain greedy.
            with torch.no_grad():
                greedy_cfg = dict(cfg, topk_method="greedy")
                _, _, r_greedy, _ = forward(greedy_cfg, params, ids)
            differs = any(not torch.equal(routes[l][1], r_greedy[l][1]) for l in routes)
            assert differs, "group-limited routing equals greedy for this case; change the seed"
        exp = {"logits": logits.detach(), "loss": loss.detach().reshape(1), "aux_expert": aux.reshape(1)}
        for j, hs in enumerate(hidden):
            exp[f"hidden.{j}"] = hs.detach()
        for l, (lg, idx, w) in routes.items():
            exp[f"route.{l}.router_logits"] = lg.detach()
            exp[f"route.{l}.topk_idx"] = idx.to(torch.int64)
            exp[f"route.{l}.topk_weight"] = w.detach()
        for k, v in leaves.items():
            exp[f"grad.{k}"] = v.grad
        d = os.path.join(out_dir, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
        save_file({k: v.contiguous() for k, v in params.items()}, os.path.join(d, "model.safetensors"))
        save_file({"input_ids": ids.to(torch.int64)}, os.path.join(d, "input.safetensors"))
        save_file({k: v.contiguous() for k, v in exp.items()}, os.path.join(d, "expected.safetensors"))
        print(f"{name}: loss {loss.item():.6f}, aux_expert {aux.item():.6f}, {len(params)} tensors")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "Tests/Fixtures/deepseek")
