"""Choosing DANN's epoch and trade-off weight on MNIST -> USPS without target labels.

For each weight, DANN is trained from scratch (the demo's small CNN, standardised digits, 10% of the
source held out for validation) and after every epoch the label-free scores are logged (target SND,
prediction entropy and information maximisation, IWV and DEV on the source validation rows) together with the target accuracy
(which only the oracle reads). Every (weight, epoch) is a candidate; each score picks one, and the
table sets its target accuracy against the oracle's pick.

    python benchmarks/adapt/bench_selection.py [--weights 0.1,0.3,1,3] [--epochs 10]
"""

from __future__ import annotations

import argparse
import json

from transferkit.api import prepare
from transferkit.config import parse_config
from transferkit.engine.evaluate import evaluate
from transferkit.engine.trainer import Trainer
from transferkit.metrics.selection import choose
from transferkit.runs.domain import TargetScores

SCORES = {"target/snd": "snd", "target/entropy": "entropy", "target/im": "im", "val/iwv": "iwv", "val/dev": "dev"}


def candidates(weight: float, epochs: int, seed: int) -> list[dict]:
    cfg = {"data": {"dataset": "mnist_usps:usps", "source": "mnist_usps:mnist", "unlabelled": "mnist_usps:usps",
                    "shots": 0, "val_fraction": 0.1, "test_fraction": "rest", "preprocess": "standardize"},
           "model": {"backbone": "small_cnn", "backbone_args": {"in_channels": 1}, "num_classes": 10},
           "strategy": {"name": "dann", "args": {"weight": weight}},
           "train": {"epochs": epochs, "batch_size": 64, "lr": 1e-3, "seed": seed, "device": "cpu"}}
    p = prepare(parse_config(cfg))
    oracle = lambda m: {"oracle/accuracy": 100 * evaluate(m, p.test)["accuracy"]}  # noqa: E731 - target labels
    history = Trainer(p.cfg.train, progress=False, evaluators=[TargetScores(p.unlabelled, p.train, p.val), oracle]).fit(
        p.model, p.strategy, p.train, p.val)
    return [{"weight": weight, "epoch": r["epoch"], **{k: r[k] for k in (*SCORES, "oracle/accuracy")}}
            for r in history]


def picks(cands: list[dict]) -> list[dict]:
    """The oracle's pick and each score's pick among the candidates, with its gap to the oracle in points."""
    best = max(c["oracle/accuracy"] for c in cands)
    rows = [{"score": "oracle (target labels)", "weight": None, "epoch": None, "accuracy": best, "gap": 0.0}]
    for key, name in SCORES.items():
        pick = choose([c | {name: c[key]} for c in cands], name)
        rows.append({"score": key, "weight": pick["weight"], "epoch": pick["epoch"],
                     "accuracy": pick["oracle/accuracy"], "gap": best - pick["oracle/accuracy"]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default="0.1,0.3,1,3")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/adapt_selection.json")
    a = ap.parse_args()
    cands = [c for w in a.weights.split(",") for c in candidates(float(w), a.epochs, a.seed)]
    rows = picks(cands)
    with open(a.out, "w") as f:
        json.dump({"candidates": cands, "rows": rows}, f, indent=2)
    print("| chosen by | weight | epoch | target accuracy % | below the oracle (points) |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['score']} | {r['weight'] or ''} | {r['epoch'] or ''} | {r['accuracy']:.1f} | {r['gap']:.1f} |")


if __name__ == "__main__":
    main()
