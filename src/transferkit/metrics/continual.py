"""Continual-learning metrics from the accuracy matrix, as pure functions.

``R[i][j]`` is the accuracy on task ``j``'s test set after training on task ``i`` (both from 0);
``b[j]`` the accuracy of the randomly initialised model on task ``j`` (Lopez-Paz & Ranzato, 2017;
forgetting as in Chaudhry et al., 2018).
"""

from __future__ import annotations

import numpy as np


def _matrix(R) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.size == 0:
        raise ValueError(f"the accuracy matrix must be square and non-empty; got shape {R.shape}.")
    return R


def average_accuracy(R) -> float:
    """Mean accuracy over all tasks after the last one: ``mean_j R[T-1][j]``."""
    return float(_matrix(R)[-1].mean())


def forgetting(R) -> float:
    """Average forgetting: ``mean_{j<T-1} max_{l<T-1} R[l][j] - R[T-1][j]`` (0 for one task)."""
    R = _matrix(R)
    T = len(R)
    if T < 2:
        return 0.0
    return float(np.mean([R[j:T - 1, j].max() - R[-1, j] for j in range(T - 1)]))


def backward_transfer(R) -> float:
    """BWT: ``mean_{j<T-1} R[T-1][j] - R[j][j]`` (negative means forgetting)."""
    R = _matrix(R)
    T = len(R)
    return 0.0 if T < 2 else float(np.mean([R[-1, j] - R[j, j] for j in range(T - 1)]))


def forward_transfer(R, b) -> float:
    """FWT: ``mean_{j>0} R[j-1][j] - b[j]``, the accuracy on a task before training on it, against
    a randomly initialised model."""
    R, b = _matrix(R), np.asarray(b, dtype=float)
    T = len(R)
    return 0.0 if T < 2 else float(np.mean([R[j - 1, j] - b[j] for j in range(1, T)]))


def summary(R, b=None) -> dict[str, float]:
    out = {"average_accuracy": average_accuracy(R), "forgetting": forgetting(R), "bwt": backward_transfer(R)}
    if b is not None:
        out["fwt"] = forward_transfer(R, b)
    return out
