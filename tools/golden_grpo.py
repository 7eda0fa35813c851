#!/usr/bin/env python3
"""Golden values for DeepTrain's GRPO loss from TRL's own implementation.

Runs TRL's GRPOTrainer._compute_loss (and its advantage formula, via trl's nanstd) on small
tensors, with the model's per-token log-probabilities and entropies supplied directly, for every
loss type trl 1.16.0's GRPOConfig accepts (grpo, bnpo, dr_grpo, dapo, cispo, sapo, luspo,
vespo), with and without the KL term, at μ = 1 (π_old = π_θ detached) and μ > 1 (π_old given),
with token- and sequence-level (GSPO) importance sampling and with top_entropy_quantile < 1.
Writes Tests/Fixtures/grpo/grpo_loss.json: the inputs, the loss, its gradient with respect to
the per-token log-probabilities, the advantages and the logged KL, clip and entropy figures.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch==2.13.0+cpu trl
    /tmp/venv/bin/python tools/golden_grpo.py

Run by hand; DeepTrain never needs Python.
"""
import json
import math
import os
import types
from collections import defaultdict

import torch
import trl
from trl.trainer.grpo_trainer import GRPOTrainer
from trl.trainer.utils import nanstd


def stub(loss_type, beta, eps_low, eps_high, max_len, level, quantile, vllm=False):
    """The attributes _compute_loss reads, nothing else (one process, no accumulation)."""
    t = types.SimpleNamespace()
    t.loss_type, t.beta, t.epsilon_low, t.epsilon_high = loss_type, beta, eps_low, eps_high
    t.max_completion_length = max_len
    t.importance_sampling_level = level
    t.top_entropy_quantile = quantile
    t.get_high_entropy_mask = lambda e, m, q: GRPOTrainer.get_high_entropy_mask(t, e, m, q)
    t.get_off_policy_mask = GRPOTrainer.get_off_policy_mask
    t.get_gamma_weights = GRPOTrainer.get_gamma_weights
    t.off_policy_mask_threshold = None
    t.use_vllm = vllm
    t.vllm_importance_sampling_correction = vllm
    t.aux_loss_enabled = False
    t._entropy_bonus_enabled = False
    t.current_gradient_accumulation_steps = 1
    t.args = types.SimpleNamespace(delta=None, use_bias_correction_kl=False, steps_per_generation=1,
                                   sapo_temperature_pos=1.0, sapo_temperature_neg=1.05,
                                   vespo_k_pos=2.0, vespo_lambda_pos=3.0, vespo_k_neg=3.0, vespo_lambda_neg=2.0)
    t.model = types.SimpleNamespace(training=True)
    t._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}

    class Acc:
        num_processes = 1
        sync_gradients = True

        def gather(self, x):
            return x

        def gather_for_metrics(self, x):
            return x

        def reduce(self, x, reduction="sum"):
            return x

        def pad_across_processes(self, x, dim=0, pad_index=0):
            return x

    t.accelerator = Acc()
    return t


def case(name, loss_type, beta, mu, seed, eps_low=0.2, eps_high=0.28, groups=2, G=4, T=6, max_len=8,
         level="token", quantile=1.0, is_mode=None, clip_min=None, clip_max=3.0):
    g = torch.Generator().manual_seed(seed)
    B = groups * G
    rewards = torch.randint(0, 3, (B,), generator=g).double() * 0.5
    rewards[:G] = 1.0  # one group with zero spread: advantages 0
    mean = rewards.view(-1, G).mean(dim=1).repeat_interleave(G)
    std = nanstd(rewards.view(-1, G), dim=1).repeat_interleave(G)
    advantages = ((rewards - mean) / (std + 1e-4)).float()
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).float()
    logps = (-torch.rand(B, T, generator=g) * 3).float()
    old = None
    if mu > 1:  # a later update of the same generation: π_old from before, ratios away from 1
        old = (logps + (torch.rand(B, T, generator=g) - 0.5) * 0.8).float()
    ref = (logps + (torch.rand(B, T, generator=g) - 0.5) * 0.5).float()
    entropies = (torch.rand(B, T, generator=g) * 4).float()  # drawn last: earlier cases keep their values
    sample = (old + (torch.rand(B, T, generator=g) - 0.5) * 0.6).float() if is_mode else None
    num_items = mask.sum()

    leaf = logps.clone().requires_grad_(True)
    t = stub(loss_type, beta, eps_low, eps_high, max_len, level, quantile, vllm=is_mode is not None)
    t._get_per_token_logps_and_entropies = lambda *a, **k: (leaf, entropies, None)
    inputs = {
        "prompt_ids": torch.zeros(B, 1, dtype=torch.long), "prompt_mask": torch.ones(B, 1),
        "completion_ids": torch.zeros(B, T, dtype=torch.long), "completion_mask": mask,
        "advantages": advantages, "num_items_in_batch": num_items,
    }
    if old is not None:
        inputs["old_per_token_logps"] = old
    if beta != 0:
        inputs["ref_per_token_logps"] = ref
    if is_mode:
        # TRL's importance weights between the sampler and π_old (_generate_and_score_completions,
        # restated): exp of the masked log-ratio, per token or summed per completion, then
        # clamped (truncate) or zeroed outside [clip_min, clip_max] (mask).
        diff = (old - sample) * mask
        ratio = torch.exp(diff.sum(-1, keepdim=True) if is_mode.startswith("sequence") else diff)
        lo = -math.inf if clip_min is None else clip_min
        hi = math.inf if clip_max is None else clip_max
        if is_mode.endswith("truncate"):
            ratio = torch.clamp(ratio, min=clip_min, max=clip_max)
        else:
            ratio = ratio.masked_fill((ratio < lo) | (ratio > hi), 0.0)
        inputs["importance_sampling_ratio"] = ratio
    loss = GRPOTrainer._compute_loss(t, None, inputs)
    loss.backward()
    m = t._metrics["train"]
    return {
        "name": name, "loss_type": loss_type, "beta": beta, "num_iterations": mu,
        "importance_sampling_level": level, "top_entropy_quantile": quantile, "entropies": entropies.flatten().tolist(),
        "importance_sampling_mode": is_mode, "importance_sampling_clip_min": clip_min, "importance_sampling_clip_max": clip_max,
        "sampling_logps": None if sample is None else sample.flatten().tolist(),
        "epsilon_low": eps_low, "epsilon_high": eps_high, "max_completion_length": max_len,
        "group_size": G, "rows": B, "length": T,
        "rewards": rewards.tolist(), "advantages": advantages.tolist(),
        "mask": mask.flatten().tolist(), "logps": logps.flatten().tolist(),
        "old_logps": None if old is None else old.flatten().tolist(), "ref_logps": ref.flatten().tolist(),
        "loss": loss.item(), "grad": leaf.grad.flatten().tolist(),
        "kl": m["kl"][0] if beta != 0 else None, "entropy": m["entropy"][0],
        "clip_region": m["clip_ratio/region_mean"][0] if "clip_ratio/region_mean" in m else None,
        "cispo_clip": m["cispo_clip_ratio"][0] if "cispo_clip_ratio" in m else None,
        "vespo_phi": m["vespo/phi_seq_mean"][0] if "vespo/phi_seq_mean" in m else None,
    }


cases = []
for i, lt in enumerate(["grpo", "bnpo", "dr_grpo", "dapo"]):
    cases.append(case(f"{lt}-mu1-beta0", lt, 0.0, 1, 10 + i))
    cases.append(case(f"{lt}-mu1-beta0.04", lt, 0.04, 1, 20 + i))
    cases.append(case(f"{lt}-mu2-beta0.04", lt, 0.04, 2, 30 + i))
# The newer loss types, each as TRL recommends it: cispo's ε_high caps the ratio itself (so a
# cap near the ratios drawn here, 1.1, to make it bite), luspo at the sequence level.
for i, (lt, level, eps_high) in enumerate([("cispo", "token", 1.1), ("sapo", "token", 0.28),
                                            ("luspo", "sequence", 0.28), ("vespo", "token", 0.28)]):
    cases.append(case(f"{lt}-mu1-beta0", lt, 0.0, 1, 40 + i, eps_high=eps_high, level=level))
    cases.append(case(f"{lt}-mu1-beta0.04", lt, 0.04, 1, 50 + i, eps_high=eps_high, level=level))
    cases.append(case(f"{lt}-mu2-beta0.04", lt, 0.04, 2, 60 + i, eps_high=eps_high, level=level))
# GSPO: the sequence-level ratio with the grpo average (the paper's setup) and with dapo's.
for i, lt in enumerate(["grpo", "dapo"]):
    cases.append(case(f"gspo-{lt}-mu2-beta0", lt, 0.0, 2, 70 + i, eps_low=3e-4, eps_high=4e-4, level="sequence"))
    cases.append(case(f"gspo-{lt}-mu2-beta0.04", lt, 0.04, 2, 72 + i, level="sequence"))
# Only the highest-entropy tokens trained (the KL term stays on every token).
for i, (lt, q) in enumerate([("dapo", 0.2), ("grpo", 0.5), ("cispo", 0.2), ("dapo", 0.0)]):
    cases.append(case(f"{lt}-entropy{q}-mu2-beta0.04", lt, 0.04, 2, 80 + i, eps_high=1.1 if lt == "cispo" else 0.28, quantile=q))
# Importance weights between the sampling pass and π_old (TRL's vllm_importance_sampling_correction).
for i, (mode, lo, hi) in enumerate([("token_truncate", None, 1.2), ("token_mask", 0.8, 1.2),
                                    ("sequence_truncate", 0.5, 1.5), ("sequence_mask", None, 1.5)]):
    cases.append(case(f"dapo-is-{mode}-mu2-beta0.04", "dapo", 0.04, 2, 90 + i, is_mode=mode, clip_min=lo, clip_max=hi))
out = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "grpo", "grpo_loss.json")
with open(out, "w") as f:
    json.dump({"trl_version": trl.__version__, "torch_version": torch.__version__, "cases": cases}, f, indent=1)
print(f"wrote {len(cases)} cases to {os.path.normpath(out)} (trl {trl.__version__})")
for c in cases:
    print(f"  {c['name']:22s} loss {c['loss']:+.6f}  |grad| {sum(x * x for x in c['grad']) ** 0.5:.6f}")
