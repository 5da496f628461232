"""Mixed precision through Accelerate: bf16 against fp32 training throughput with the Trainer.

A torchvision ResNet-18 (random initialisation, nothing downloaded) fine-tuned on the 2,000 embedded
MNIST digits, upsampled to 3x112x112. Both runs use the same data, seed and steps; prints a JSON line
with samples/second for each, their ratio, and the final training loss of each (a sanity check that
bf16 trains as well). Meant for a GPU; on a CPU it runs but bf16 brings little.

    python benchmarks/bench_precision.py [--epochs 2] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from transferkit.backbones import create_backbone
from transferkit.config import TrainSettings
from transferkit.data import ArrayDataset, load_dataset
from transferkit.engine.trainer import Trainer
from transferkit.finetune import create_strategy
from transferkit.heads import create_head
from transferkit.model import TransferModel


def run(ds, precision: str, epochs: int, device: str) -> tuple[float, float]:
    torch.manual_seed(0)
    bb = create_backbone("resnet18")
    model = TransferModel(bb, create_head("linear", bb.num_features, 10))
    settings = TrainSettings(epochs=epochs, batch_size=128, lr=1e-3, device=device, mixed_precision=precision)
    t0 = time.perf_counter()
    history = Trainer(settings, progress=False).fit(model, create_strategy("full"), ds)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, history[-1]["train/task"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    a = ap.parse_args()
    digits = load_dataset("mnist_usps:mnist").resize(a.size)
    ds = ArrayDataset(digits.x.repeat(1, 3, 1, 1), digits.targets, name="mnist-rgb")
    run(ds, "no", 1, a.device)  # warm-up: kernels, cuDNN autotuning
    t32, loss32 = run(ds, "no", a.epochs, a.device)
    t16, loss16 = run(ds, "bf16", a.epochs, a.device)
    n = len(ds) * a.epochs
    print(json.dumps({"benchmark": "bf16_vs_fp32", "model": "resnet18", "image_size": a.size, "samples": n,
                      "fp32_samples_per_s": round(n / t32, 1), "bf16_samples_per_s": round(n / t16, 1),
                      "speedup": round(t32 / t16, 2), "fp32_final_loss": round(loss32, 4),
                      "bf16_final_loss": round(loss16, 4), "device": a.device,
                      "gpu": torch.cuda.get_device_name() if a.device == "cuda" else None}))


if __name__ == "__main__":
    main()
