#!/usr/bin/env python3
"""A reward model directory as transformers writes it, and the rewards it must give (issue 32).

Loads the golden V2 fixture Tests/Fixtures/deepseek/plain_q_greedy_norm with
AutoModelForSequenceClassification and one label — transformers drops lm_head and adds a
`score` head, drawn here from normal(0, 0.5) — and saves it with save_pretrained to
Tests/Fixtures/reward/model/ (config.json naming DeepseekV2ForSequenceClassification with
id2label, model.safetensors with score.weight). The expected reward of each of the fixture's
input rows is the score head applied to the final hidden state of its last token, the hidden
state from the fixture's own expected values (DeepSeek's reference code, tools/golden_deepseek.py):
so the test checks that the directory is read as a reward model and scored at the last token.
transformers' own forward of this config differs from DeepSeek's code (it scales the routed
weights by routed_scaling_factor after normalising them, which DeepSeek-V2's code does not, and
YaRN's attention scale); its scores are written beside, for the record.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch==2.13.0+cpu transformers==5.25.0
    /tmp/venv/bin/python tools/golden_reward_model.py

Run by hand; DeepTrain never needs Python.
"""
import json
import os

import torch
import transformers
from safetensors.torch import load_file

root = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures")
source = os.path.join(root, "deepseek", "plain_q_greedy_norm")
out = os.path.join(root, "reward", "model")
torch.manual_seed(7)
model = transformers.AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, dtype=torch.float32)
with torch.no_grad():
    model.score.weight.normal_(0, 0.5)  # larger than the init's 0.02, so that scores differ clearly
model.eval()
model.save_pretrained(out, safe_serialization=True)
os.chmod(os.path.join(out, "model.safetensors"), 0o644)
ids = load_file(os.path.join(source, "input.safetensors"))["input_ids"]
expected = load_file(os.path.join(source, "expected.safetensors"))
final = expected[f"hidden.{model.config.num_hidden_layers + 1}"]  # after the final norm
scores = (final[:, -1] @ model.score.weight.T).squeeze(-1)
with torch.no_grad():
    theirs = [model(input_ids=row.unsqueeze(0)).logits[0, 0].item() for row in ids]
with open(os.path.join(os.path.dirname(out), "expected.json"), "w") as f:
    json.dump({"transformers_version": transformers.__version__, "torch_version": torch.__version__,
               "sequences": ids.tolist(), "scores": scores.tolist(), "transformers_scores": theirs}, f, indent=1)
print(f"wrote {os.path.normpath(out)}: scores {scores.tolist()} (transformers' forward: {theirs})")
