"""MCC's trade-off weight for strategy auto (``select/auto.py``'s MCC_WEIGHT): MCC at each weight on the two
benchmarks where auto adapts, 3 seeds each, with the protocols of BENCHMARKS.md:
  - the 12 Amazon reviews pairs on frozen MiniLM features (benchmarks/adapt/bench_text.py: an MLP from random
    weights, the labelled source reviews and the unlabelled target reviews, 0 target labels);
  - MNIST -> USPS from the demo's source head at 0 labels (bench_auto_digits.py: the MNIST labels and the
    unlabelled USPS images, the demo's adaptation settings).
One JSON line per run: pair, method (``mcc_w<weight>``), seed, accuracy. The summary gives each weight's mean
over the Amazon pairs and its worst pair as a share of the best other method (benchmarks/results/adapt_amazon.jsonl).

    HF_HUB_OFFLINE=1 PYTHONPATH=src:benchmarks/adapt:benchmarks/auto python benchmarks/auto/bench_mcc_weight.py \
        --out benchmarks/results/auto_mcc_weight.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from transferkit import train

from bench_auto_digits import config as digits_config, demo_source  # benchmarks/auto/bench_auto_digits.py
from bench_text import DOMAINS, config as text_config, encode, fit_and_test, run_args  # benchmarks/adapt/bench_text.py
from results import run_missing  # benchmarks/adapt/results.py

WEIGHTS = (0.03, 0.1, 0.3, 0.5, 1.0)
OTHERS = ("source_only", "coral", "dann", "mcc", "jda")  # the methods of adapt_amazon.jsonl (mcc: weight 1.0)


def text_run(cache: Path, src: str, tgt: str, weight: float, seed: int, epochs: int) -> float:
    return fit_and_test(text_config(cache, src, tgt, {"name": "mcc", "args": {"weight": weight}}, seed, epochs))[0]


def digits_run(work: Path, weights: Path, weight: float, seed: int) -> float:
    cfg = digits_config(weights, 0, seed, {"name": "mcc", "args": {"weight": weight}})
    cfg["model"]["source_head"] = True  # as auto adapts from the source head
    return 100 * train(cfg, out=work / f"mcc-w{weight}-s{seed}", progress=False, overwrite=True).metrics["test/accuracy"]


def summary(rows: list[dict], reference: Path) -> str:
    ref = [json.loads(line) for line in reference.read_text().splitlines()] if reference.is_file() else []
    pairs = [f"{s}->{t}" for s, t in itertools.permutations(DOMAINS, 2)]
    mean = lambda rs, pair, m: np.mean([r["accuracy"] for r in rs if r["pair"] == pair and r["method"] == m])  # noqa: E731
    best = {p: max(mean(ref, p, m) for m in OTHERS if any(r["pair"] == p and r["method"] == m for r in ref))
            for p in pairs}
    lines = ["| MCC weight | Amazon mean, % | worst pair / best other method | MNIST -> USPS, % |", "|---|---|---|---|"]
    for w in WEIGHTS:
        m = f"mcc_w{w:g}"
        acc = {p: mean(rows, p, m) for p in pairs}
        worst = min(pairs, key=lambda p: acc[p] / best[p])
        dig = [r["accuracy"] for r in rows if r["pair"] == "mnist->usps" and r["method"] == m]
        digits = f"{np.mean(dig):.1f} ± {np.std(dig):.1f}" if dig else ""
        lines.append(f"| {w:g} | {np.mean(list(acc.values())):.1f} | {100 * acc[worst] / best[worst]:.1f} % ({worst}) | "
                     f"{digits} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/auto_mcc_weight.jsonl")
    ap.add_argument("--reference", default="benchmarks/results/adapt_amazon.jsonl")
    ap.add_argument("--work", type=Path, default=Path("runs/bench_auto_digits"))
    run_args(ap)
    a = ap.parse_args()
    cache = Path(a.cache)
    encode(cache)
    weights = demo_source(a.work)
    pairs = [f"{s}->{t}" for s, t in itertools.permutations(DOMAINS, 2)] + ["mnist->usps"]
    todo = [(p, f"mcc_w{w:g}", seed) for w in WEIGHTS for p in pairs for seed in range(a.seeds)]

    def run(pair: str, method: str, seed: int) -> dict:
        w = float(method.removeprefix("mcc_w"))
        if pair == "mnist->usps":
            return {"accuracy": round(digits_run(a.work, weights, w, seed), 2)}
        return {"accuracy": round(text_run(cache, *pair.split("->"), w, seed, a.epochs), 2)}

    print(summary(run_missing(Path(a.out), todo, run), Path(a.reference)))


if __name__ == "__main__":
    main()
