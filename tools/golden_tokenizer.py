#!/usr/bin/env python3
"""A byte-level BPE tokenizer.json and the ids Hugging Face `tokenizers` gives for a
mixed-language text, for DeepTrain's tokenizer parity test.

Run by hand, not in CI:
    tools/.venv/bin/pip install tokenizers
    tools/.venv/bin/python tools/golden_tokenizer.py Tests/Fixtures/tokenizer

The pre-tokenizer is a DeepSeek-style Sequence of regex Splits (newlines, letters with an
optional leading space, punctuation runs, trailing spaces, CJK runs, 1–3 digit groups) followed
by ByteLevel without its own regex, plus special tokens, as DeepSeek-V2's tokenizer.json has.
"""
import json
import os
import sys

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

CORPUS = [
    "The quick brown fox jumps over the lazy dog. 12345 + 678 = 13023!",
    "DeepSeek-V2 uses Multi-head Latent Attention (MLA) and DeepSeekMoE.",
    "深度求索发布了混合专家模型，激活参数二百一十亿。",
    "def add(a, b):\n    return a + b  # sum\n\tprint(add(2, 3))",
    "Ünïcödé façade — naïve café; 東京と大阪; 서울 특별시 🚀🔥 emojis",
    "Numbers 3.14159, 2,718 and 1e-9; dates 2026-11-23, times 13:39:07.",
]

PATTERNS = [
    r"[\r\n]",
    r"\s?\p{L}+",
    r"\s?[!-/:-~！-／：-～‘-‟　-。]+",
    r"\s+$",
    r"[一-龥ࠀ-一가-퟿]+",
    r"\p{N}{1,3}",
]


def main(out):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(p), behavior="isolated") for p in PATTERNS]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 20, trainer)
    os.makedirs(out, exist_ok=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    text = ("<｜begin▁of▁sentence｜>Hello world, 世界! The year 2026 has 365 days.\n"
            "  def f(x):  return x**2  # 平方\nCafé naïve — 東京 서울 🚀 3.14159<｜end▁of▁sentence｜> trailing   ")
    ids = tok.encode(text, add_special_tokens=False).ids
    with open(os.path.join(out, "parity.json"), "w") as f:
        json.dump({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)}, f, ensure_ascii=False, indent=1)
    print(len(ids), "ids")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "Tests/Fixtures/tokenizer")
