#!/usr/bin/env python3
"""Metaspace's prepend_scheme "first" after normalizers that move the text's start, and the ids
Hugging Face `tokenizers` gives, for DeepTrain's parity test
(Tests/Fixtures/tokenizers/metaspace_first.json).

tokenizers prepends the replacement only to a piece whose original offsets start at 0: a piece
after an added token does not start there, nor does one whose leading spaces a Strip (or a
Replace with nothing) removed.

Run by hand, not in CI:
    python3 -m venv /tmp/rvenv && /tmp/rvenv/bin/pip install tokenizers==0.22.1
    /tmp/rvenv/bin/python tools/golden_metaspace_first.py Tests/Fixtures/tokenizers
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from tokenizer_corpus import corpus  # noqa: E402
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers  # noqa: E402

TEXTS = [
    "hello world",
    " hello world",
    "   hello  world  ",
    "  ",
    "",
    "\u00a0\u00a0nbsp first",
    "\n\nnewline first",
    "<s>hello",
    "<s> hello",
    "  <s> hello",
    "hello <s> world",
    "<|x|>  world",
    "xyz abc",
    "  xyz abc",
    "  \u0301accent first",
]


def base_model():
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    tok.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>"], limit_alphabet=80,
                                                          show_progress=False))
    return json.loads(tok.to_str())


def metaspace(scheme, split):
    return {"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": split}


CASES = [
    ("Strip both, first, split", {"type": "Strip", "strip_left": True, "strip_right": True}, metaspace("first", True)),
    ("Strip left, first, no split", {"type": "Strip", "strip_left": True, "strip_right": False}, metaspace("first", False)),
    ("Strip right only, first", {"type": "Strip", "strip_left": False, "strip_right": True}, metaspace("first", True)),
    ("Lowercase then Strip, first", {"type": "Sequence", "normalizers": [{"type": "Lowercase"}, {"type": "Strip", "strip_left": True, "strip_right": True}]},
     metaspace("first", True)),
    ("Replace leading spaces with nothing, first", {"type": "Replace", "pattern": {"Regex": "^ +"}, "content": ""}, metaspace("first", True)),
    ("NFD StripAccents, first", {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "StripAccents"}]}, metaspace("first", True)),
    ("no normalizer, first", None, metaspace("first", True)),
    ("Strip both, always", {"type": "Strip", "strip_left": True, "strip_right": True}, metaspace("always", True)),
]

ADDED = [
    {"content": "<s>", "special": True, "normalized": False},
    {"content": "<|x|>", "special": False, "normalized": False},
    {"content": "xyz", "special": False, "normalized": True},
]


def main(out):
    model = base_model()
    base_added = model["added_tokens"]
    cases = []
    for name, normalizer, pre in CASES:
        j = json.loads(json.dumps(model))
        j["normalizer"], j["pre_tokenizer"], j["decoder"], j["post_processor"] = normalizer, pre, None, None
        tok = Tokenizer.from_str(json.dumps(j))
        for a in ADDED:
            tok.add_tokens([AddedToken(a["content"], special=a["special"], normalized=a["normalized"])])
        j = json.loads(tok.to_str())
        encodings = [tok.encode(t, add_special_tokens=False) for t in TEXTS]
        cases.append({"name": name, "normalizer": normalizer, "pre_tokenizer": pre, "added_tokens": j["added_tokens"],
                      "ids": [e.ids for e in encodings], "tokens": [e.tokens for e in encodings]})
    model_only = {k: v for k, v in model["model"].items()}
    with open(os.path.join(out, "metaspace_first.json"), "w", encoding="utf-8") as f:
        json.dump({"texts": TEXTS, "model": model_only, "base_added_tokens": base_added, "cases": cases}, f, ensure_ascii=False)
    print(len(cases), "metaspace-first cases")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "Tests/Fixtures/tokenizers")
