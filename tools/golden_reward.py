#!/usr/bin/env python3
"""Golden values for DeepTrain's reward-model loss from TRL's own RewardTrainer.compute_loss.

Runs compute_loss with a stand-in model whose output logits (the rewards of the chosen rows,
then the rejected ones, as TRL's collator stacks them) are given directly, with and without
per-pair margins and `center_rewards_coefficient`. Writes
Tests/Fixtures/reward/bradley_terry.json: the rewards, margins, loss, its gradient with respect
to each reward, and the logged accuracy and margin.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch==2.13.0+cpu trl==1.16.0
    /tmp/venv/bin/python tools/golden_reward.py

Run by hand; DeepTrain never needs Python.
"""
import json
import os
import types
from collections import defaultdict

import torch
import trl
from trl.trainer.reward_trainer import RewardTrainer


def stub(center):
    """The attributes compute_loss reads, nothing else (one process)."""
    t = types.SimpleNamespace()
    t.model = types.SimpleNamespace(training=True)
    t.args = types.SimpleNamespace(center_rewards_coefficient=center)
    t._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    t._total_train_tokens = 0
    t._tp_size = 1

    class Acc:
        num_processes = 1

        def gather(self, x):
            return x

        def gather_for_metrics(self, x):
            return x

    t.accelerator = Acc()
    return t


def case(name, seed, pairs=6, margin=False, center=None):
    g = torch.Generator().manual_seed(seed)
    chosen = (torch.randn(pairs, generator=g) * 2).float()
    rejected = (torch.randn(pairs, generator=g) * 2).float()
    margins = (torch.rand(pairs, generator=g) * 2).float() if margin else None
    leaf = torch.cat([chosen, rejected]).unsqueeze(-1).clone().requires_grad_(True)
    model = lambda **kw: types.SimpleNamespace(logits=leaf)
    inputs = {"input_ids": torch.zeros(2 * pairs, 3, dtype=torch.long), "attention_mask": torch.ones(2 * pairs, 3)}
    if margins is not None:
        inputs["margin"] = margins
    t = stub(center)
    loss = RewardTrainer.compute_loss(t, model, inputs)
    loss.backward()
    grad = leaf.grad.squeeze(-1)
    m = t._metrics["train"]
    return {"name": name, "chosen": chosen.tolist(), "rejected": rejected.tolist(),
            "margins": None if margins is None else margins.tolist(), "center_rewards_coefficient": center,
            "loss": loss.item(), "grad_chosen": grad[:pairs].tolist(), "grad_rejected": grad[pairs:].tolist(),
            "accuracy": m["accuracy"][0], "margin": m["margin"][0]}


cases = [case("plain", 1), case("margin", 2, margin=True), case("center", 3, center=0.01),
         case("margin-center", 4, margin=True, center=0.05), case("one-pair", 5, pairs=1), case("large", 6, pairs=16)]
out = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "reward", "bradley_terry.json")
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "w") as f:
    json.dump({"trl_version": trl.__version__, "torch_version": torch.__version__, "cases": cases}, f, indent=1)
print(f"wrote {len(cases)} cases to {os.path.normpath(out)} (trl {trl.__version__})")
for c in cases:
    print(f"  {c['name']:14s} loss {c['loss']:.6f}  accuracy {c['accuracy']:.3f}  margin {c['margin']:+.4f}")
