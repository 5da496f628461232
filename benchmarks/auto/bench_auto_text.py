"""strategy auto on the Amazon reviews pairs of BENCHMARKS.md ("Domain adaptation on text"): the same
protocol as benchmarks/adapt/bench_text.py (frozen MiniLM-L6 features of the 2,000 reviews of each domain,
an MLP trained on the labelled source reviews, 0 target labels, the unlabelled target reviews, every target
review the test set), with ``strategy: auto``; one JSON line per run with its accuracy, the chosen strategy,
the reason and the measured proxy A-distance. The summary sets auto beside the best method of
benchmarks/results/adapt_amazon.jsonl on each pair.

    PYTHONPATH=src:benchmarks/adapt python benchmarks/auto/bench_auto_text.py --out benchmarks/results/auto_amazon.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from bench_text import DOMAINS, config, encode, fit_and_test, run_args  # benchmarks/adapt/bench_text.py
from results import run_missing  # benchmarks/adapt/results.py


def auto_run(cache: Path, src: str, tgt: str, seed: int, epochs: int) -> dict:
    acc, p = fit_and_test(config(cache, src, tgt, {"name": "auto"}, seed, epochs))
    return {"accuracy": round(acc, 2), "chosen": p.auto["strategy"], "pad": round(p.auto["facts"]["pad"], 3),
            "reason": p.auto["reason"]}


def summary(rows: list[dict], reference: Path) -> str:
    ref = [json.loads(line) for line in reference.read_text().splitlines()] if reference.is_file() else []
    lines = ["| pair | proxy-A | auto's choice | auto | best in adapt_amazon.jsonl | best | auto / best |",
             "|---|---|---|---|---|---|---|"]
    for s, t in itertools.permutations(DOMAINS, 2):
        pair = f"{s}->{t}"
        mine = [r for r in rows if r["pair"] == pair]
        if not mine:
            continue
        acc = {}
        for r in ref:
            if r["pair"] == pair:
                acc.setdefault(r["method"], []).append(r["accuracy"])
        best = max(acc, key=lambda m: np.mean(acc[m])) if acc else ""
        a, b = np.mean([r["accuracy"] for r in mine]), (np.mean(acc[best]) if best else float("nan"))
        lines.append(f"| {pair} | {mine[0]['pad']:.2f} | {mine[0]['chosen']} | {a:.1f} ± "
                     f"{np.std([r['accuracy'] for r in mine]):.1f} | {best} | {b:.1f} | {100 * a / b:.1f} % |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/auto_amazon.jsonl")
    ap.add_argument("--reference", default="benchmarks/results/adapt_amazon.jsonl")
    run_args(ap)
    a = ap.parse_args()
    cache = Path(a.cache)
    encode(cache)
    todo = [(f"{s}->{t}", "auto", seed) for s, t in itertools.permutations(DOMAINS, 2) for seed in range(a.seeds)]
    rows = run_missing(Path(a.out), todo, lambda pair, _m, seed: auto_run(cache, *pair.split("->"), seed, a.epochs))
    print(summary(rows, Path(a.reference)))


if __name__ == "__main__":
    main()
