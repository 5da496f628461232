"""strategy auto on the demo's digits (MNIST -> USPS, BENCHMARKS.md "strategy: auto"): from the demo's
source model (the small CNN on the 2,000 standardised MNIST digits, 15 epochs), with the MNIST labels and
the unlabelled USPS images (the demo's adaptation settings: 5 epochs, batches of 64) and 0 / 1 / 3 / 10
USPS labels per class; every other USPS image is the test set. One JSON line per run with its accuracy,
the chosen strategy and the reason.

And, without the unlabelled images, auto beside the demo's own few-shot strategies at 1 / 3 / 10 labels in one
``compare`` (the demo's target config and variants: feature extraction and full fine-tuning from the source
head, the latter at a tenth of the rate, and from scratch; compare's guard rows held out as in the demo):
one JSON line per (strategy, labels) in ``--few-shot-out``.

    PYTHONPATH=src:benchmarks/adapt python benchmarks/auto/bench_auto_digits.py --out benchmarks/results/auto_demo.jsonl \
        --few-shot-out benchmarks/results/auto_demo_fewshot.jsonl
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import yaml

from transferkit import train
from transferkit.compare import compare
from transferkit.demo import DemoSettings, adapt_config, few_shot_variants, source_config, target_config

from results import run_missing  # benchmarks/adapt/results.py

SHOTS = (0, 1, 3, 10)
FEW_SHOTS = (1, 3, 10)


def demo_source(work: Path) -> Path:
    """The demo's source model, trained once into ``work/source``; its weights file."""
    weights = work / "source" / "model.safetensors"
    if not weights.is_file():
        train(source_config(DemoSettings()), out=work / "source", progress=False, overwrite=True)
    return weights


def config(weights: Path, shots: int, seed: int, strategy: dict) -> dict:
    """The demo's adaptation config (MNIST labels, unlabelled USPS) with ``shots`` USPS labels per class."""
    cfg = copy.deepcopy(adapt_config(DemoSettings(), weights))
    cfg["data"]["shots"] = shots
    cfg["strategy"] = strategy
    cfg["train"]["seed"] = seed
    return cfg | {"report": {"feature_map": "none"}}


def auto_run(work: Path, weights: Path, shots: int, seed: int) -> dict:
    res = train(config(weights, shots, seed, {"name": "auto"}), out=work / f"auto-k{shots}-s{seed}", progress=False,
                overwrite=True)
    strategy = yaml.safe_load((res.run_dir / "config.yaml").read_text())["strategy"]
    return {"accuracy": round(100 * res.metrics["test/accuracy"], 2), "chosen": strategy["name"],
            "args": strategy["args"], "reason": strategy["reason"]}


def few_shot(work: Path, weights: Path, seeds: int, out: Path) -> None:
    """auto, the demo's feature extraction and full fine-tuning, and from scratch at 1 / 3 / 10 labels, in one
    ``compare`` as the demo runs them; a JSON line per row of its table into ``out`` (unless already there)."""
    if out.is_file():
        return
    s = DemoSettings(seeds=seeds)
    cfg = target_config(s, weights)
    cfg["compare"] = {"variants": few_shot_variants(s)}
    rows = compare(cfg, ["feature_extraction", "full", "auto"], list(FEW_SHOTS), seeds, work / "few_shot",
                   overwrite=True, show_table=False)
    keys = ("strategy", "shots", "accuracy_mean", "accuracy_std", "chosen")
    out.write_text("".join(json.dumps({k: r[k] for k in keys if k in r}) + "\n" for r in rows))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/auto_demo.jsonl")
    ap.add_argument("--work", type=Path, default=Path("runs/bench_auto_digits"))
    ap.add_argument("--few-shot-out", type=Path, default=Path("benchmarks/results/auto_demo_fewshot.jsonl"))
    ap.add_argument("--seeds", type=int, default=3)
    a = ap.parse_args()
    weights = demo_source(a.work)
    few_shot(a.work, weights, a.seeds, a.few_shot_out)
    for r in map(json.loads, a.few_shot_out.read_text().splitlines()):
        print(f"k = {r['shots']}: {r['strategy']} {r['accuracy_mean']:.1f} ± {r['accuracy_std']:.1f}")
    todo = [(f"mnist->usps k={k}", "auto", seed) for k in SHOTS for seed in range(a.seeds)]
    rows = run_missing(Path(a.out), todo, lambda pair, _m, seed: auto_run(a.work, weights, int(pair.split("=")[1]),
                                                                            seed))
    for k in SHOTS:
        acc = [r["accuracy"] for r in rows if r["pair"] == f"mnist->usps k={k}"]
        print(f"k = {k} labels per class: auto {np.mean(acc):.1f} ± {np.std(acc):.1f} % ({len(acc)} seeds)")


if __name__ == "__main__":
    main()
