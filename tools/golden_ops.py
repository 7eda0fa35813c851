#!/usr/bin/env python3
"""Golden values for DeepTrain's fused ops, computed by PyTorch (float32, CPU).

Run by hand, not in CI:
    python3 -m venv tools/.venv
    tools/.venv/bin/pip install torch==2.13.0+cpu
    tools/.venv/bin/python tools/golden_ops.py > Tests/Fixtures/ops_golden.json

Each case stores its inputs, PyTorch's output, and the gradient of sum(output * probe) with
respect to each differentiable input, where `probe` is a fixed random tensor of the output's
shape (so every output element's gradient path is exercised, not only their sum).
"""
import json
import torch

torch.manual_seed(20261123)
cases = []


def t(*shape, scale=1.0):
    return (torch.randn(*shape) * scale).float()


def add(name, inputs, fn, extra=None):
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items() if v.is_floating_point()}
    out = fn(**{k: leaves.get(k, v) for k, v in inputs.items()})
    probe = t(*out.shape) if out.dim() > 0 else torch.ones(())
    (out * probe).sum().backward()
    case = {
        "name": name,
        "inputs": {k: {"shape": list(v.shape), "values": v.flatten().tolist()} for k, v in inputs.items()},
        "output": {"shape": list(out.shape), "values": out.detach().flatten().tolist()},
        "probe": {"shape": list(probe.shape), "values": probe.flatten().tolist()},
        "grads": {k: g.grad.flatten().tolist() for k, g in leaves.items() if g.grad is not None},
    }
    if extra:
        case.update(extra)
    cases.append(case)


# softmax / log-softmax over the last axis, with a large offset to exercise max-subtraction
x = t(4, 9, scale=3.0)
x[1] += 80.0
add("softmax", {"x": x}, lambda x: torch.softmax(x, dim=-1))
add("log_softmax", {"x": x}, lambda x: torch.log_softmax(x, dim=-1))

# cross-entropy with ignored targets, mean over counted rows
logits = t(6, 11, scale=2.0)
targets = [3, -100, 0, 10, -100, 7]
add("cross_entropy", {"logits": logits},
    lambda logits: torch.nn.functional.cross_entropy(logits, torch.tensor(targets), ignore_index=-100),
    {"targets": targets})

# RMSNorm as Hugging Face's LlamaRMSNorm / DeepseekV2RMSNorm computes it
eps = 1e-6
add("rms_norm", {"x": t(5, 16), "weight": 1 + 0.1 * t(16)},
    lambda x, weight: weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)),
    {"eps": eps})

# rotary embedding, rotate-half layout, x [B, T, H, D], tables [T, D/2]
B, T, H, D = 2, 5, 3, 8
inv_freq = 1.0 / (10000 ** (torch.arange(0, D, 2).float() / D))
freqs = torch.outer(torch.arange(T).float(), inv_freq)
cos_h, sin_h = freqs.cos(), freqs.sin()


def rope(x, cos, sin):
    c = torch.cat([cos, cos], -1)[None, :, None, :]
    s = torch.cat([sin, sin], -1)[None, :, None, :]
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    return x * c + torch.cat([-x2, x1], -1) * s


add("rope", {"x": t(B, T, H, D), "cos": cos_h, "sin": sin_h}, lambda x, cos, sin: rope(x, cos.detach(), sin.detach()))

# causal attention with a q/k head dim different from v's (MLA: 192 vs 128), [B, T, H, D] layout
Dk, Dv = 6, 4
scale = 0.37


def attn(q, k, v):
    out = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True, scale=scale)
    return out.transpose(1, 2)


add("attention", {"q": t(B, T, H, Dk), "k": t(B, T, H, Dk), "v": t(B, T, H, Dv)}, attn,
    {"scale": scale, "causal": True})


# non-causal, more keys than queries
def attn_full(q, k, v):
    out = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=False, scale=scale)
    return out.transpose(1, 2)


add("attention_full", {"q": t(1, 3, 2, Dk), "k": t(1, 7, 2, Dk), "v": t(1, 7, 2, Dv)}, attn_full,
    {"scale": scale, "causal": False})


# Longer sequences than DeepTrain's causal block (64 queries), so the blocked GEMMs are checked:
# T = S = 100 (blocks 64, 36), and a cached step's shape with fewer queries than keys
# (T = 70 at positions 20..89 of S = 90: query i sees keys 0...S − T + i, an explicit mask
# since PyTorch's is_causal aligns to the top-left).
def attn_masked(q, k, v):
    t, s = q.shape[1], k.shape[1]
    mask = torch.arange(s)[None, :] <= (s - t + torch.arange(t))[:, None]
    out = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, scale=scale)
    return out.transpose(1, 2)


add("attention_long", {"q": t(1, 100, 1, Dk), "k": t(1, 100, 1, Dk), "v": t(1, 100, 1, Dv)}, attn_masked,
    {"scale": scale, "causal": True})
add("attention_cached", {"q": t(1, 70, 1, Dk), "k": t(1, 90, 1, Dk), "v": t(1, 90, 1, Dv)}, attn_masked,
    {"scale": scale, "causal": True})

# MLA's attention from kv_b_proj's per-head [k_nope | v] and the one shared rope key, as
# transformers' DeepseekV2Attention assembles them: k = [k_nope, k_pe expanded over heads].
NOPE, ROPE, DV = 4, 2, 3


def latent(q, kv, kPe):
    b, s, h = kv.shape[0], kv.shape[1], kv.shape[2]
    k = torch.cat([kv[..., :NOPE], kPe.expand(b, s, h, ROPE)], -1)
    return attn_masked(q, k, kv[..., NOPE:])


add("latent_attention", {"q": t(1, 80, 2, NOPE + ROPE), "kv": t(1, 80, 2, NOPE + DV), "kPe": t(1, 80, 1, ROPE)},
    latent, {"scale": scale, "causal": True, "nope": NOPE})

# SwiGLU's projections and activation, as transformers' LlamaMLP computes act(gate(x)) * up(x)
add("swiglu_linear", {"x": t(3, 5, 16), "gate": t(24, 16, scale=0.3), "up": t(24, 16, scale=0.3)},
    lambda x, gate, up: torch.nn.functional.silu(x @ gate.T) * (x @ up.T))

print(json.dumps({"generator": "tools/golden_ops.py", "torch": torch.__version__, "cases": cases}))
