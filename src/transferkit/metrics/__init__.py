"""Pure metric functions."""

from __future__ import annotations

import numpy as np
import torch


def accuracy(logits: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray) -> float:
    """Fraction of rows whose arg-max equals the target.

    Shape:
        logits: ``[N, C]``; targets: ``[N]``.
    """
    pred = np.asarray(logits).argmax(-1) if not isinstance(logits, torch.Tensor) else logits.argmax(-1).cpu().numpy()
    targets = np.asarray(targets.cpu() if isinstance(targets, torch.Tensor) else targets)
    return float((pred == targets).mean()) if len(targets) else float("nan")


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
