"""Inference helpers shared by the trainer, ``eval`` and ``predict``."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from transferkit.data.batches import batches, move  # noqa: F401  (re-exported)
from transferkit.data.datasets import length_order
from transferkit.metrics import accuracy
from transferkit.model import TransferModel


@torch.no_grad()
def predict_logits(model: TransferModel, dataset: Dataset, batch_size: int = 256, precomputed: bool = False,
                   task: str | None = None, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and targets over ``dataset`` in eval mode (training mode restored afterwards).

    Shape:
        returns ``([N, C], [N])`` on the CPU.
    """
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    ordered, order = length_order(dataset)
    logits, targets = [], []
    for x, y in DataLoader(ordered, batch_size=batch_size, shuffle=False):
        logits.append(model(move(x, device), task=task, precomputed=precomputed).logits.float().cpu())
        targets.append(torch.as_tensor(y))
    model.train(was_training)
    inverse = torch.as_tensor(np.argsort(order))
    return torch.cat(logits)[inverse], torch.cat(targets)[inverse]


def evaluate(model: TransferModel, dataset: Dataset, batch_size: int = 256, precomputed: bool = False,
             task: str | None = None, prefix: str = "") -> dict[str, float]:
    """``{prefix+"loss", prefix+"accuracy"}`` over ``dataset`` (per-task metrics for a multi-task model)."""
    if hasattr(model, "weighter"):
        from transferkit.multitask.evaluate import evaluate_multitask

        return evaluate_multitask(model, dataset, batch_size, prefix)
    logits, targets = predict_logits(model, dataset, batch_size, precomputed, task)
    return {f"{prefix}loss": float(F.cross_entropy(logits, targets)), f"{prefix}accuracy": accuracy(logits, targets)}
