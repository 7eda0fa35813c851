#!/usr/bin/env python3
"""Measured peak memory per rank against `deeptrain plan`, at the four layouts of issue 13.

    python3 tools/memory_table.py recipes/expert-heavy.yaml [recipes/small-pretrain.yaml ...]

For each recipe and layout (dp, ep, pp) in (1,1,1), (4,4,1), (2,1,2), (2,2,2) it trains the
recipe under mpirun (4 ranks, --oversubscribe), reads `rank_peak_rss_mb` of the last step from
metrics.jsonl, asks `deeptrain plan --recipe --dp --ep --pp --json` for each stage's estimate,
and prints a Markdown table of both and their ratio. Uses .build/release/deeptrain.
"""
import json, os, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, ".build/release/deeptrain")
LAYOUTS = [(1, 1, 1), (4, 4, 1), (2, 1, 2), (2, 2, 2)]


def run(recipe, dp, ep, pp, tmp):
    ranks = dp * pp
    out = os.path.join(tmp, f"{os.path.basename(recipe)}-{dp}-{ep}-{pp}")
    args = [BIN, "train", recipe, "--run-dir", out, "--set", f"parallel.dp={dp}", "--set", f"parallel.ep={ep}",
            "--set", f"parallel.pp={pp}"]
    if ranks > 1:
        args = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(ranks)] + args
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMIX_"))}
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, env=env)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        measured = json.loads(f.read().splitlines()[-1])["rank_peak_rss_mb"]
    plan = json.loads(subprocess.run([BIN, "plan", "--recipe", recipe, "--dp", str(dp), "--ep", str(ep), "--pp", str(pp), "--json"],
                                     check=True, capture_output=True, text=True).stdout)
    stages = [r["total_bytes"] / 2**20 for r in plan["memory_per_rank"]["ranks"]]
    # World rank = stage · dp + d (ProcessGrid).
    estimate = [stages[rank // dp] for rank in range(ranks)]
    return measured, estimate


def main():
    print("| recipe | layout (dp, ep, pp) | measured peak per rank (MiB) | plan per rank (MiB) | plan / measured |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in sys.argv[1:]:
            for dp, ep, pp in LAYOUTS:
                m, e = run(recipe, dp, ep, pp, tmp)
                ratios = [x / y for x, y in zip(e, m)]
                print(f"| {os.path.basename(recipe)} | ({dp}, {ep}, {pp}) | {', '.join(f'{x:.0f}' for x in m)} | "
                      f"{', '.join(f'{x:.0f}' for x in e)} | {min(ratios):.2f}–{max(ratios):.2f} |", flush=True)


if __name__ == "__main__":
    main()
