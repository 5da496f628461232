"""Deep domain adaptation on the JDA digits (2,000 MNIST / 1,800 USPS, 16x16): source-only and every
deep method, both directions, several seeds, the demo's small CNN trained from scratch.

Every run has the same preprocessing (``data.preprocess``), optimiser and step budget: ``epochs``
passes over the 2,000 (or 1,800) labelled source images in batches of ``batch`` source rows; the
adapted models see ``batch`` unlabelled target rows besides in each step. The test set is the whole
target domain (the transductive protocol of the JDA line of work); its labels are read only to score.

    python benchmarks/adapt/bench_deep.py --out benchmarks/results/adapt_digits.jsonl [--seeds 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from transferkit.api import prepare
from transferkit.config import parse_config
from transferkit.engine.evaluate import evaluate
from transferkit.engine.trainer import Trainer

from results import run_missing  # benchmarks/adapt/results.py

METHODS = ["source_only", "dan", "coral", "dann", "cdan", "cdan_e", "mcd", "mcc", "dann+entropy", "cdan_e+mcc"]
PUBLISHED = {"mnist->usps": {"JDA": 67.28, "MEDA": 89.5}, "usps->mnist": {"JDA": 59.65, "MEDA": 72.1}}


def config(src: str, tgt: str, method: str, seed: int, epochs: int, batch: int, preprocess: str) -> dict:
    return {"data": {"dataset": f"mnist_usps:{tgt}", "source": f"mnist_usps:{src}", "unlabelled": f"mnist_usps:{tgt}",
                     "shots": 0, "val_fraction": 0.0, "test_fraction": "rest", "preprocess": preprocess},
            "model": {"backbone": "small_cnn", "backbone_args": {"in_channels": 1}, "num_classes": 10},
            "strategy": {"name": "full" if method == "source_only" else method},
            "train": {"epochs": epochs, "batch_size": batch, "lr": 1e-3, "seed": seed, "device": "cpu"}}


def run(src, tgt, method, seed, epochs, batch, preprocess) -> dict:
    p = prepare(parse_config(config(src, tgt, method, seed, epochs, batch, preprocess)))
    t0 = time.perf_counter()
    Trainer(p.cfg.train, progress=False).fit(p.model, p.strategy, p.train)
    acc = evaluate(p.model, p.test)["accuracy"]
    return {"accuracy": round(100 * acc, 2),
            "seconds": round(time.perf_counter() - t0, 1), "epochs": epochs, "batch": batch, "preprocess": preprocess}


def table(rows: list[dict]) -> str:
    pairs = sorted({r["pair"] for r in rows}, reverse=True)
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    lines = ["| method | " + " | ".join(pairs) + " |", "|---" * (len(pairs) + 1) + "|"]
    for m in methods:
        cells = []
        for p in pairs:
            a = [r["accuracy"] for r in rows if r["method"] == m and r["pair"] == p]
            cells.append(f"{np.mean(a):.1f} ± {np.std(a):.1f}" if a else "")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    for name in ("JDA", "MEDA"):
        lines.append(f"| {name} (published) | " + " | ".join(str(PUBLISHED[p][name]) for p in pairs) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/adapt_digits.jsonl")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--preprocess", default="standardize")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--pairs", default="mnist->usps,usps->mnist")
    a = ap.parse_args()
    todo = [(p, m, seed) for p in a.pairs.split(",") for m in a.methods.split(",") for seed in range(a.seeds)]
    rows = run_missing(Path(a.out), todo, lambda p, m, seed: run(*p.split("->"), m, seed, a.epochs, a.batch,
                                                                   a.preprocess))
    print(table(rows))


if __name__ == "__main__":
    main()
