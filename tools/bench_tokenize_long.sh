#!/usr/bin/env bash
# Tokens/s of the published pre-tokenizer patterns on long degenerate inputs (docs/data.md,
# "Regexes"): 100 KB and 1 MB of one letter, spaces, digits, newlines and mixed text, encoded
# by `deeptrain bench tokenize` (one thread, best of $REPEATS, default 10) with the GPT-2, Llama 3 and DeepSeek
# fixture tokenizers and, for Qwen2, the Llama 3 fixture with Qwen2's Split pattern.
#   tools/bench_tokenize_long.sh [DEEPTRAIN]      prints: tokenizer input size tokens tokens/s
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-.build/release/deeptrain}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work" <<'PY'
import json, random, sys
w = sys.argv[1]
random.seed(0)
mixed = "The quick brown fox, 12345 jumps!\n  東京 don't  \t"
for size, n in (("100k", 100_000), ("1m", 1_000_000)):
    for kind, text in (("letters", "a" * n), ("spaces", " " * n), ("digits", "7" * n), ("newlines", "\n" * n),
                       ("mixed", (mixed * (n // len(mixed) + 1))[:n])):
        open(f"{w}/{kind}-{size}.txt", "w").write(text)
tok = json.load(open("Tests/Fixtures/tokenizers/llama3/tokenizer.json"))
qwen = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
def swap(node):
    if isinstance(node, dict):
        if node.get("type") == "Split" and "Regex" in node.get("pattern", {}):
            node["pattern"]["Regex"] = qwen
        for v in node.values(): swap(v)
    elif isinstance(node, list):
        for v in node: swap(v)
swap(tok["pre_tokenizer"])
import os; os.makedirs(f"{w}/qwen2"); json.dump(tok, open(f"{w}/qwen2/tokenizer.json", "w"))
PY
for tok in gpt2 llama3 deepseek qwen2; do
  dir=Tests/Fixtures/tokenizers/$tok; [ $tok = qwen2 ] && dir=$work/qwen2
  for kind in letters spaces digits newlines mixed; do
    for size in 100k 1m; do
      "$bin" bench tokenize --tokenizer "$dir" --corpus "$work/$kind-$size.txt" --repeats "${REPEATS:-10}" |
        python3 -c "import json,sys; d=json.load(sys.stdin); print('$tok $kind $size', d['tokens'], round(d['tokens_per_s']))"
    done
  done
done
