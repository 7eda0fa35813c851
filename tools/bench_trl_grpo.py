#!/usr/bin/env python3
"""TRL's GRPOTrainer on the demo's GRPO stage — the same tiny model, prompts, rewards and
settings — timed on this machine, for docs/benchmarks.md (issue 32). Run by hand:

    deeptrain convert runs/demo/checkpoints/step-00003000.h5 /tmp/demo-sft-hf   # after `make run`
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch==2.13.0+cpu trl==1.16.0
    /tmp/venv/bin/python tools/bench_trl_grpo.py /tmp/demo-sft-hf [--steps 12 --warmup 2 --threads 2]

The model is the demo's SFT checkpoint as transformers' DeepseekV2ForCausalLM. The demo's byte
chat format becomes a tokenizer whose 256 tokens are the bytes (WordLevel over Latin-1
characters, fused on decode), so prompt and completion ids are the ones DeepTrain sees:
"User: What is a+b?\\nAssistant: ", completions ending at "\\n" (id 10). Rewards as the demo's:
exact answer 1 (the text after the completion's last "=" equals the sum), format 0.2 (the
completion ended its turn, is one line without surrounding spaces, and its final answer is a
number). GRPO as recipes/demo.yaml's stage: 16 prompts × 8 completions of ≤ 12 tokens a step in
4 micro-batches of 32, temperature 1, β 0.2, dapo, AdamW lr 5e-6 constant after 5 warm-up
steps, weight decay 0, one update per generation batch, fp32 on the CPU, one process with
`--threads` torch threads. Prints one JSON line: every step's seconds (generation, scoring,
reference forward, forward and backward, optimizer: the whole `training_step`) and their median
after `--warmup` steps.
"""
import argparse
import json
import os
import platform
import random
import statistics
import sys
import time

import torch
import transformers
import trl
from datasets import Dataset
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, TrainerCallback

EOT = 10  # "\n": the byte chat format's end of turn


def byte_tokenizer():
    vocab = {chr(i): i for i in range(256)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=chr(0)))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=chr(EOT), pad_token=chr(EOT))
    fast.padding_side = "left"
    return fast


def held_out(a, b):
    """SyntheticArithmetic.isHeldOut: the pairs no stage trains on."""
    h = ((a * 1_000_003 + b) * 0x9E3779B97F4A7C15) & (2**64 - 1)
    h ^= h >> 29
    return h % 10 == 0


def prompts(n, seed):
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        a, b = rng.randrange(100), rng.randrange(100)
        if not held_out(a, b):
            out.append({"prompt": f"User: What is {a}+{b}?\nAssistant: ", "answer": str(a + b)})
    return out


def final_answer(text):
    return text.rsplit("=", 1)[-1].strip()


def exact(completions, answer, **_):
    return [1.0 if final_answer(c.split("\n")[0]) == a else 0.0 for c, a in zip(completions, answer)]


def format_reward(completions, answer, completion_ids, **_):
    # The end of turn is the tokenizer's eos, which TRL's decoding drops: ask the ids.
    def ok(c, a, ids):
        if EOT not in ids:
            return False  # cut at the length limit
        line = c.split("\n")[0]
        if line != line.strip() or not line:
            return False
        return not a.lstrip("-").isdigit() or final_answer(line).lstrip("-").isdigit()
    return [1.0 if ok(c, a, ids) else 0.0 for c, a, ids in zip(completions, answer, completion_ids)]


class StepTimes(TrainerCallback):
    def __init__(self):
        self.times, self.start = [], None

    def on_step_begin(self, args, state, control, **kw):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.times.append(time.perf_counter() - self.start)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model", help="the demo's SFT checkpoint as a Hugging Face directory (deeptrain convert)")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1234)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tokenizer = byte_tokenizer()
    model = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.generation_config.eos_token_id = EOT
    model.generation_config.pad_token_id = EOT
    data = Dataset.from_list(prompts(16 * args.steps, args.seed))
    config = trl.GRPOConfig(
        output_dir="/tmp/bench-trl-grpo", per_device_train_batch_size=32, gradient_accumulation_steps=4,
        num_generations=8, max_completion_length=12, temperature=1.0, top_p=1.0, beta=0.2, loss_type="dapo",
        epsilon=0.2, num_iterations=1, scale_rewards="group", learning_rate=5e-6, lr_scheduler_type="constant_with_warmup",
        warmup_steps=5, weight_decay=0.0, max_steps=args.steps, logging_steps=1, report_to=[], save_strategy="no",
        use_cpu=True, bf16=False, seed=args.seed, dataloader_num_workers=0, reward_weights=[1.0, 0.2], log_completions=False)
    timer = StepTimes()
    trainer = trl.GRPOTrainer(model=model, reward_funcs=[exact, format_reward], args=config, train_dataset=data,
                              processing_class=tokenizer, callbacks=[timer])
    trainer.train()
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    timed = timer.times[args.warmup:]
    print(json.dumps({
        "benchmark": "trl-grpo", "trl_version": trl.__version__, "torch_version": torch.__version__,
        "transformers_version": transformers.__version__, "threads": args.threads, "machine": platform.processor() or platform.machine(),
        "prompts_per_step": 16, "num_generations": 8, "max_completion_length": 12,
        "step_s": timer.times, "median_step_s": statistics.median(timed) if timed else None,
        "reward_mean_first": rewards[0] if rewards else None, "reward_mean_last": rewards[-1] if rewards else None,
    }))


if __name__ == "__main__":
    sys.exit(main())
