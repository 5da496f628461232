"""Throughput of transferkit's Trainer against a minimal hand-written PyTorch loop.

Same model (small_cnn), data (2,000 MNIST digits from the embedded JDA set), batch size and
optimizer; the two loops alternate over several repetitions and the best time of each is kept.
Prints a JSON line with samples/second for both and their ratio (target >= 0.95).

    python benchmarks/bench_loop.py [--epochs 3] [--reps 5] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from transferkit.backbones import create_backbone
from transferkit.config import TrainSettings
from transferkit.data import load_dataset
from transferkit.engine.trainer import EpochSampler, Trainer
from transferkit.finetune import create_strategy
from transferkit.heads import create_head
from transferkit.model import TransferModel


def model_() -> TransferModel:
    torch.manual_seed(0)
    return TransferModel(create_backbone("small_cnn", in_channels=1), create_head("linear", 128, 10))


def hand_loop(ds, epochs: int, batch_size: int, device: str) -> float:
    model = model_().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sampler = EpochSampler(len(ds), 0)
    loader = DataLoader(ds, batch_size=batch_size, sampler=sampler)
    model.train()
    t0 = time.perf_counter()
    for epoch in range(epochs):
        sampler.use_epoch(epoch)
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x).logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def trainer_loop(ds, epochs: int, batch_size: int, device: str) -> float:
    model = model_()
    trainer = Trainer(TrainSettings(epochs=epochs, batch_size=batch_size, lr=1e-3, device=device), progress=False)
    t0 = time.perf_counter()
    trainer.fit(model, create_strategy("full"), ds)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    a = ap.parse_args()
    ds = load_dataset("mnist_usps:mnist")
    hand, ours = [], []
    for _ in range(a.reps):
        hand.append(hand_loop(ds, a.epochs, a.batch_size, a.device))
        ours.append(trainer_loop(ds, a.epochs, a.batch_size, a.device))
    n = len(ds) * a.epochs
    result = {"benchmark": "trainer_vs_hand_loop", "samples": n, "batch_size": a.batch_size,
              "hand_samples_per_s": round(n / min(hand), 1), "trainer_samples_per_s": round(n / min(ours), 1),
              "ratio": round(min(hand) / min(ours), 3), "threads": torch.get_num_threads(), "device": a.device,
              "machine": platform.machine(), "torch": torch.__version__}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
