#!/usr/bin/env python3
"""PyTorch + transformers timings of the models `deeptrain bench train` and `bench generate`
time, on the same machine, for the comparisons in docs/benchmarks.md (issue 14). Run by hand:

    tools/.venv/bin/python tools/bench_pytorch.py train --model small [--threads 2]
    tools/.venv/bin/python tools/bench_pytorch.py train --model dense
    tools/.venv/bin/python tools/bench_pytorch.py generate --model small [--batch 1] [--new 128]

`small` is transformers' DeepseekV2ForCausalLM with DeepTrain's `small` preset (Sources/DeepSeek/
Presets.swift), `dense` a LlamaForCausalLM of DeepTrain's bench dense decoder (d 256, 8 layers,
8 heads, SwiGLU 1024, vocab 4096, untied head). Training: batch 8 × 256 random tokens, AdamW
(lr 1e-4), 2 warm-up steps, then the mean over the timed steps, as `bench train` does; the
MoE's auxiliary loss is on (aux_loss_alpha 0.003) as in DeepTrain's step. Prints one JSON line.

`--keep-freed-memory` runs PyTorch under the allocator policy `deeptrain` sets for itself (glibc
never returns freed memory: MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_=2^31-1). By default glibc
maps blocks above 32 MB afresh and unmaps them on free, so every step faults their pages in
again, which on a VM where a new page is slow to touch costs PyTorch up to a fifth of its step
(docs/benchmarks.md). The JSON says which policy ran (`keep_freed_memory`).

PyTorch's other ways to train here (issue 33 asks for its fastest): `--compile` runs the model
through `torch.compile` (inductor; the first steps compile, so give `--warmup 10`), `--autocast
bf16` runs the forward under `torch.autocast("cpu", bfloat16)` with fp32 weights and AdamW. The
JSON says which ran (`compile`, `autocast`).
"""
import argparse
import contextlib
import json
import os
import platform
import sys
import time

import torch
import transformers


def small_config():
    return transformers.DeepseekV2Config(
        vocab_size=4096, hidden_size=256, intermediate_size=1024, moe_intermediate_size=256, num_hidden_layers=8,
        num_attention_heads=8, num_key_value_heads=8, n_shared_experts=2, n_routed_experts=16, routed_scaling_factor=1.0,
        kv_lora_rank=64, q_lora_rank=128, qk_rope_head_dim=16, v_head_dim=32, qk_nope_head_dim=32,
        topk_method="group_limited_greedy", n_group=4, topk_group=2, num_experts_per_tok=2, first_k_dense_replace=1,
        norm_topk_prob=False, aux_loss_alpha=0.003, max_position_embeddings=1024,
        rope_scaling={"type": "yarn", "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256,
                      "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 0.0},
        tie_word_embeddings=False, attn_implementation="sdpa")


def dense_config():
    return transformers.LlamaConfig(
        vocab_size=4096, hidden_size=256, intermediate_size=1024, num_hidden_layers=8, num_attention_heads=8,
        num_key_value_heads=8, max_position_embeddings=256, tie_word_embeddings=False, attn_implementation="sdpa")


def build(name):
    torch.manual_seed(1)
    if name == "small":
        return transformers.DeepseekV2ForCausalLM(small_config())
    return transformers.LlamaForCausalLM(dense_config())


def train(args):
    model = build(args.model)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    # The ways PyTorch can run this on a CPU: eager, or compiled by inductor; fp32, or the
    # forward under bf16 autocast (weights and the optimizer stay fp32, as in mixed precision).
    forward = torch.compile(model) if args.compile else model
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if args.autocast == "bf16" else contextlib.nullcontext()
    g = torch.Generator().manual_seed(3)
    vocab = model.config.vocab_size

    def step():
        ids = torch.randint(0, vocab, (args.batch, args.length + 1), generator=g)
        t0 = time.perf_counter()
        with autocast:
            out = forward(input_ids=ids[:, :-1], labels=ids[:, 1:].contiguous(), output_router_logits=args.model == "small") \
                if args.model == "small" else forward(input_ids=ids[:, :-1], labels=ids[:, 1:].contiguous())
            loss = out.loss
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2

    for _ in range(args.warmup):
        step()
    f = b = o = 0.0
    for _ in range(args.steps):
        x, y, z = step()
        f += x; b += y; o += z
    per = (f + b + o) / args.steps
    print(json.dumps({
        "benchmark": "pytorch-train", "model": args.model, "torch": torch.__version__, "transformers": transformers.__version__,
        "threads": torch.get_num_threads(), "batch": args.batch, "sequence_length": args.length, "steps_timed": args.steps,
        "parameters": sum(p.numel() for p in model.parameters()), "tokens_per_s": args.batch * args.length / per,
        "step_ms": per * 1e3, "forward_ms": f / args.steps * 1e3, "backward_ms": b / args.steps * 1e3,
        "optimizer_ms": o / args.steps * 1e3, "cpu": platform.processor() or platform.machine(),
        "keep_freed_memory": keeps_freed_memory(), "compile": args.compile, "autocast": args.autocast,
    }))


def generate(args):
    model = build(args.model)
    model.eval()
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, model.config.vocab_size, (args.batch, 16), generator=g)
    with torch.no_grad():
        model.generate(ids, max_new_tokens=4, do_sample=False, min_new_tokens=4)  # warm up
        t0 = time.perf_counter()
        out = model.generate(ids, max_new_tokens=args.new, do_sample=False, min_new_tokens=args.new)
        dt = time.perf_counter() - t0
    new = (out.shape[1] - ids.shape[1]) * args.batch
    print(json.dumps({"benchmark": "pytorch-generate", "model": args.model, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "batch": args.batch, "prompt": 16, "new_tokens": args.new,
                      "tokens_per_s": new / dt, "seconds": dt, "keep_freed_memory": keeps_freed_memory()}))


KEEP_FREED = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "2147483647"}


def keeps_freed_memory():
    return all(os.environ.get(k) == v for k, v in KEEP_FREED.items())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["train", "generate"])
    p.add_argument("--model", choices=["small", "dense"], default="small")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--new", type=int, default=128)
    p.add_argument("--compile", action="store_true", help="train: torch.compile the model (inductor)")
    p.add_argument("--autocast", choices=["none", "bf16"], default="none", help="train: the forward under CPU autocast")
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="run under deeptrain's allocator policy (glibc reads it at start: the script restarts itself)")
    args = p.parse_args()
    if args.keep_freed_memory and not keeps_freed_memory():
        os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, **KEEP_FREED})
    torch.set_num_threads(args.threads)
    if args.batch is None:
        args.batch = 8 if args.what == "train" else 1
    train(args) if args.what == "train" else generate(args)


if __name__ == "__main__":
    main()
