#!/usr/bin/env python3
"""Checks by hand that a directory `deeptrain convert CK.h5 DIR` wrote loads in transformers:
AutoModelForCausalLM and AutoTokenizer from_pretrained, one forward pass, the chat template.

    tools/.venv/bin/pip install torch==2.13.0+cpu transformers==5.23.0
    tools/.venv/bin/python tools/check_hf_export.py DIR
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main(d):
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
    model.eval()
    tok = AutoTokenizer.from_pretrained(d)
    n = sum(p.numel() for p in model.parameters())
    print("model", type(model).__name__, n, "parameters; first weight dtype on disk:",
          json.load(open(f"{d}/config.json")).get("torch_dtype", "?"))
    messages = [{"role": "user", "content": "What is 2+3?"}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    if hasattr(ids, "keys"):
        ids = ids["input_ids"]
    print("tokenizer", type(tok).__name__, "chat ids", list(ids)[:24])
    with torch.no_grad():
        logits = model(torch.tensor([list(ids)])).logits
    print("logits", tuple(logits.shape), "finite:", bool(torch.isfinite(logits).all()))
    out = model.generate(torch.tensor([list(ids)]), max_new_tokens=8, do_sample=False)
    print("greedy continuation:", repr(tok.decode(out[0][len(ids):])))


if __name__ == "__main__":
    main(sys.argv[1])
