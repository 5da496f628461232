"""The cost of a domain-adaptation step against a source-only step at the same per-domain batch size.

One epoch of ``--steps`` steps of the demo's small CNN on the MNIST digits (source) with the USPS digits as
unlabelled target rows, through the trainer: source-only (``full``: ``batch`` source rows a step) and DAN,
Deep CORAL and DANN (``batch`` source + ``batch`` target rows a step, one concatenated forward pass). Each
timing is the best of ``--reps`` runs, the methods interleaved, so load changes hit every method alike.
Prints one JSON line per method with its seconds per step and its ratio to source-only.

    python benchmarks/adapt/bench_step.py [--batch 64] [--steps 20] [--reps 5] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from transferkit.adapt import use_unlabelled
from transferkit.backbones import create_backbone
from transferkit.config import TrainSettings
from transferkit.data import ArrayDataset, load_dataset
from transferkit.engine.trainer import Trainer
from transferkit.finetune import create_strategy
from transferkit.heads import create_head
from transferkit.model import TransferModel

METHODS = ("full", "dan", "coral", "dann")


def one_epoch(method: str, source, target, batch: int, device: str = "cpu") -> float:
    torch.manual_seed(0)
    model = TransferModel(create_backbone("small_cnn", in_channels=1), create_head("linear", 128, 10))
    strategy = create_strategy(method)
    use_unlabelled(strategy, target)
    settings = TrainSettings(epochs=1, batch_size=batch, lr=1e-3, device=device, seed=0)
    t0 = time.perf_counter()
    Trainer(settings, progress=False).fit(model, strategy, source)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    a = ap.parse_args()
    mnist, n = load_dataset("mnist_usps:mnist", preprocess="standardize"), a.batch * a.steps
    source = ArrayDataset(mnist.x[:n], mnist.targets[:n])  # in memory, indexed a batch at a time
    target = load_dataset("mnist_usps:usps", preprocess="standardize")
    one_epoch("full", source, target, a.batch, a.device)  # warm-up
    best = {m: float("inf") for m in METHODS}
    for _ in range(a.reps):
        for m in METHODS:
            best[m] = min(best[m], one_epoch(m, source, target, a.batch, a.device))
    for m in METHODS:
        print(json.dumps({"method": m, "batch_per_domain": a.batch, "steps": a.steps,
                          "seconds_per_step": round(best[m] / a.steps, 4),
                          "ratio_to_source_only": round(best[m] / best["full"], 3),
                          "device": a.device, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
