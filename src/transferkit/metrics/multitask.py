"""Multi-task metrics as pure functions."""

from __future__ import annotations

import torch


class ZeroBaselineError(ValueError):
    """A single-task baseline metric of 0: the relative change against it is undefined."""


def delta_m(multi: dict[str, float], single: dict[str, float], higher_is_better: dict[str, bool]) -> float:
    """Δm% (Maninis et al., 2019): the mean relative change of each task's metric against its
    single-task baseline, signed so that positive is better, in percent:
    ``100/T * sum_t (-1)^{l_t} (M_mt,t - M_st,t) / M_st,t`` with ``l_t = 1`` where lower is better.

    Raises ``ZeroBaselineError`` when a baseline is 0 (an accuracy of 0, an error of exactly 0),
    where the relative change has no value.
    """
    missing = [t for t in multi if t not in single or t not in higher_is_better]
    if missing or not multi:
        raise ValueError(f"delta_m needs a single-task baseline and a direction for every task; missing: {missing}.")
    zero = [t for t in multi if single[t] == 0]
    if zero:
        raise ZeroBaselineError(f"delta_m is undefined: the single-task baseline of task '{zero[0]}' is 0, and a "
                                "relative change against 0 has no value; compare that task's metric directly.")
    total = 0.0
    for t, m in multi.items():
        sign = 1.0 if higher_is_better[t] else -1.0
        total += sign * (m - single[t]) / abs(single[t])
    return 100.0 * total / len(multi)


def gradient_cosines(G: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarity of the task gradients (rows of ``G``): negative entries are
    conflicting tasks. Shape: ``G [T, P]`` -> ``[T, T]``."""
    U = G / G.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return U @ U.t()


def gram_cosines(K: torch.Tensor) -> torch.Tensor:
    """The same cosines from the Gram matrix ``K = G G^T``: ``K_ij / sqrt(K_ii K_jj)``.
    Shape: ``[T, T]`` -> ``[T, T]``."""
    d = K.diagonal().clamp_min(1e-24).sqrt()
    return K / d[:, None] / d[None, :]
