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


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear centred kernel alignment between two representations of the same examples
    (Kornblith et al., 2019): 1 for representations equal up to rotation and scale, 0 for unrelated.

    Shape:
        x: ``[N, D1]``; y: ``[N, D2]``.
    """
    x = x.double() - x.double().mean(0, keepdim=True)
    y = y.double() - y.double().mean(0, keepdim=True)
    if x.shape[1] + y.shape[1] > 2 * x.shape[0]:  # wide features (e.g. flattened maps): N x N Gram form,
        kx, ky = x @ x.T, y @ y.T  # since ||Y^T X||_F^2 = <X X^T, Y Y^T>_F for centred X, Y
        num, den = (kx * ky).sum(), torch.linalg.matrix_norm(kx) * torch.linalg.matrix_norm(ky)
    else:
        num = torch.linalg.matrix_norm(y.T @ x) ** 2
        den = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(num / den) if den > 0 else float("nan")


def relative_change(new: torch.Tensor, old: torch.Tensor) -> float:
    """``||new - old|| / ||old||`` (0 for an unchanged tensor)."""
    denom = float(old.double().norm())
    return float((new.double() - old.double()).norm()) / denom if denom > 0 else float((new.double() - old.double()).norm())
