#!/usr/bin/env bash
# The demo over BLAS kernels and seeds, each with its shuffled-reward control (docs/grpo.md):
#
#   tools/demo_sweep.sh OUT_DIR "SkylakeX Haswell Prescott" "1234 1 2" [deeptrain train options...]
#
# For each kernel K and seed S: `OPENBLAS_CORETYPE=K launch/local.sh 2 recipes/demo.yaml --set
# seed=S`, then the GRPO stage again from that run's SFT checkpoint (step 3000) with
# `grpo.control=shuffle_rewards` — the same budget, the same SFT weights. Prints one row per
# run: held-out exact match after pretraining and SFT, GRPO's and the control's gain, and the
# control's gain in standard errors of a difference of two accuracies on n sums. SWEEP_CONTROL=0
# skips the controls (their columns read "-"), e.g. to compare training options over seeds:
#   SWEEP_CONTROL=0 tools/demo_sweep.sh OUT Cooperlake "1234 1 2" --set parallel.comm_dtype=bf16
# Runs one after another (each uses both cores); a finished run directory is reused, so a
# stopped sweep resumes.
# Tool only: the binary must be built (make build).
set -uo pipefail
[[ $# -ge 3 ]] || { echo "usage: tools/demo_sweep.sh OUT_DIR \"KERNELS\" \"SEEDS\" [train options...]" >&2; exit 2; }
out=$1; kernels=$2; seeds=$3; shift 3
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$out"

# train.log: "step N/N ... exact match P% of N" ends a stage's evaluation; "before training: ..."
# comes just before a stage's opening line "stage N KIND: ...". The pretrain figure is the last
# step line of the pretrain stage; GRPO's "before" is its own before-training evaluation (greedy
# answers to the prompts, i.e. the SFT result as GRPO sees it), its "after" the last one.
accuracies() {  # LOG -> "pretrain grpo_before grpo_after n" (percent)
    awk 'function pct() { for (i = 1; i <= NF; i++) if ($i == "match") { v = $(i+1); sub("%", "", v); n = $(i+3); return v } }
         /^stage [0-9]+ pretrain/ {st = "pre"} /^stage [0-9]+ sft/ {st = "sft"} /^stage [0-9]+ grpo/ {st = "grpo"; before = last}
         /exact match/ { last = pct(); if (st == "pre" && /^step/) pre = last }
         END { printf "%s %s %s %s\n", (pre == "" ? "-" : pre), before, last, n }' "$1"
}

printf '| kernel | seed | pretrain | after SFT | GRPO | gain | control | control gain (SE) | time |\n'
printf '| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n'
for k in $kernels; do
    for s in $seeds; do
        run=$out/$k-$s; ctl=$out/$k-$s-control
        if ! grep -q "^stage 2 grpo" "$run/train.log" 2>/dev/null || [[ ! -f $run/done ]]; then
            rm -rf "$run"; t0=$(date +%s)
            OPENBLAS_CORETYPE=$k "$root/launch/local.sh" 2 "$root/recipes/demo.yaml" --run-dir "$run" \
                --set seed="$s" "$@" > "$out/$k-$s.out" 2>&1 || { echo "| $k | $s | failed: $out/$k-$s.out |"; continue; }
            echo $(( $(date +%s) - t0 )) > "$run/done"
        fi
        if [[ ${SWEEP_CONTROL:-1} == 0 ]]; then
            read -r pre sft grpo n < <(accuracies "$run/train.log")
            awk -v k="$k" -v s="$s" -v pre="$pre" -v sft="$sft" -v g="$grpo" -v t="$(cat "$run/done")" 'BEGIN {
                printf "| %s | %s | %.1f%% | %.1f%% | %.1f%% | %+.1f | - | - | %d s |\n", k, s, pre, sft, g, g - sft, t }'
            continue
        fi
        if [[ ! -f $ctl/done ]]; then
            rm -rf "$ctl"
            OPENBLAS_CORETYPE=$k "$root/launch/local.sh" 2 "$root/recipes/demo.yaml" --run-dir "$ctl" \
                --resume "$run/checkpoints/step-00003000.h5" --set seed="$s" \
                --set stages.2.grpo.control=shuffle_rewards "$@" > "$out/$k-$s-control.out" 2>&1 \
                || { echo "| $k | $s | control failed: $out/$k-$s-control.out |"; continue; }
            touch "$ctl/done"
        fi
        read -r pre sft grpo n < <(accuracies "$run/train.log")
        read -r _ csft cgrpo _ < <(accuracies "$ctl/train.log")
        [[ $csft == "$sft" ]] || echo "warning: $k-$s: the control started at $csft%, the run's GRPO at $sft%" >&2
        awk -v k="$k" -v s="$s" -v pre="$pre" -v sft="$sft" -v g="$grpo" -v c="$cgrpo" -v n="$n" -v t="$(cat "$run/done")" 'BEGIN {
            p0 = sft / 100; p1 = c / 100; se = 100 * sqrt(p0 * (1 - p0) / n + p1 * (1 - p1) / n)
            printf "| %s | %s | %.1f%% | %.1f%% | %.1f%% | %+.1f | %.1f%% → %.1f%% | %+.1f (%.2f SE) | %d s |\n",
                   k, s, pre, sft, g, g - sft, sft, c, c - sft, (se > 0 ? (c - sft) / se : 0), t }'
    done
done
