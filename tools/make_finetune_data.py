#!/usr/bin/env python3
"""Writes recipes/data/ for recipes/finetune-hf*.yaml (run by hand; the files are committed):
pretrain.jsonl (English sentences about sums of small numbers), chat.jsonl (conversations
asking for them) and prompts.jsonl (held-apart questions with their answers, for GRPO)."""
import json
import random

WORDS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen".split()


def main(out="recipes/data"):
    rng = random.Random(20261201)
    pairs = [(a, b) for a in range(16) for b in range(16)]
    rng.shuffle(pairs)
    grpo_pairs, train_pairs = pairs[:40], pairs[40:]
    with open(f"{out}/pretrain.jsonl", "w") as f:
        for _ in range(3000):
            a, b = rng.choice(pairs)
            s = rng.choice(["{A} plus {B} is {S}.", "{A} and {B} make {S}.", "The sum of {a} and {b} is {S}.", "{S} is {a} plus {b}."])
            text = s.format(A=WORDS[a].capitalize(), B=WORDS[b], a=WORDS[a], b=WORDS[b], S=a + b)
            f.write(json.dumps({"text": text[0].upper() + text[1:]}) + "\n")
    with open(f"{out}/chat.jsonl", "w") as f:
        for i in range(400):
            a, b = rng.choice(train_pairs)
            q = rng.choice(["What is {a} plus {b}?", "How much is {a} and {b}?", "Add {a} and {b}."]).format(a=WORDS[a], b=WORDS[b])
            system = [{"role": "system", "content": "You add numbers."}] if i % 4 == 0 else []
            f.write(json.dumps({"messages": system + [{"role": "user", "content": q},
                                                      {"role": "assistant", "content": f"{WORDS[a].capitalize()} plus {WORDS[b]} is {a + b}."}]},
                               ensure_ascii=False) + "\n")
    with open(f"{out}/prompts.jsonl", "w") as f:
        for a, b in grpo_pairs:
            f.write(json.dumps({"prompt": f"What is {WORDS[a]} plus {WORDS[b]}?", "answer": a + b}) + "\n")


if __name__ == "__main__":
    main()
