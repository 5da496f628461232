"""Deterministic stratified splits and k-shot / label-fraction sampling (pure functions on labels).

Splits are stratified by class for class indices (``int [N]``); multi-hot and regression targets
(float arrays) have no single class per example, so they are split uniformly at random (one group).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from transferkit.errors import TransferkitError


def has_classes(y: np.ndarray) -> bool:
    """Whether ``y`` holds one class index per example (and so can be stratified or k-shot sampled)."""
    y = np.asarray(y)
    return y.ndim == 1 and (y.dtype.kind in "iu" or y.size == 0)


def _draw_per_class(y: np.ndarray, pool: np.ndarray | None, seed: int, count) -> np.ndarray:
    """Sorted indices: ``count(class, available)`` examples of each class in ``pool``, drawn with ``seed``
    (targets without classes form one group)."""
    y = np.asarray(y) if has_classes(y) else np.zeros(len(y), dtype=np.int64)
    pool = np.arange(len(y)) if pool is None else np.asarray(pool)
    rng = np.random.default_rng(seed)
    parts = [rng.permutation(idx)[: count(int(c), len(idx))] for c in np.unique(y[pool]) for idx in [pool[y[pool] == c]]]
    return np.sort(np.concatenate(parts)) if parts else np.array([], dtype=np.int64)


def stratified_split(y: np.ndarray, fraction: float, seed: int, pool: np.ndarray | None = None):
    """Split ``pool`` (default: all indices) into (kept, taken) with ``fraction`` of each class taken.

    At least one example of each class with two or more examples is taken; classes keep
    their proportions up to rounding. Same ``seed`` -> same split.
    """
    if not 0.0 <= fraction < 1.0:
        raise TransferkitError(f"A split fraction must be in [0, 1); got {fraction}.")

    def count(_c: int, n: int) -> int:
        k = int(round(fraction * n))
        return max(1, min(k, n - 1)) if fraction > 0 and n > 1 else k

    pool = np.arange(len(y)) if pool is None else np.asarray(pool)
    taken = _draw_per_class(y, pool, seed, count)
    return np.setdiff1d(pool, taken), taken


def k_shot(y: np.ndarray, k: int, seed: int, pool: np.ndarray | None = None) -> np.ndarray:
    """``k`` examples of every class, drawn from ``pool`` with ``seed``.

    Shape:
        y: ``[N]`` labels; returns sorted indices ``[k * C]``.
    """
    if k < 1:
        raise TransferkitError(f"'shots' must be >= 1; got {k}.")
    if not has_classes(y):
        raise TransferkitError("'shots' counts examples per class, and multi-label and regression targets have no "
                               "single class; use data.label_fraction to take a fraction of the examples.")

    def count(c: int, n: int) -> int:
        if n < k:
            raise TransferkitError(
                f"Class {c} has only {n} examples available for training; lower 'shots' to {n} or less."
            )
        return k

    return _draw_per_class(y, pool, seed, count)


def label_fraction(y: np.ndarray, fraction: float, seed: int, pool: np.ndarray | None = None) -> np.ndarray:
    """A stratified ``fraction`` of ``pool`` (at least one example per class; a uniform draw for
    targets without classes)."""
    if not 0.0 < fraction <= 1.0:
        raise TransferkitError(f"'label_fraction' must be in (0, 1]; got {fraction}.")
    return _draw_per_class(y, pool, seed, lambda _c, n: max(1, int(round(fraction * n))))


@dataclass(frozen=True)
class Splits:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    guard: np.ndarray = field(default_factory=lambda: np.array([], dtype=np.int64))  # rows the negative-transfer guard validates on


def make_splits(
    y: np.ndarray,
    *,
    seed: int = 0,
    val_fraction: float = 0.0,
    test_fraction: float | str = 0.2,
    shots: int | None = None,
    fraction: float | None = None,
    guard_fraction: float = 0.0,
) -> Splits:
    """Test, validation and training indices, deterministic in ``seed``.

    With ``test_fraction="rest"`` the test set is every example not used for training or
    validation (the usual few-shot protocol); otherwise a stratified test set is held out first.
    The training set is then sub-sampled to ``shots`` per class or a label ``fraction``.
    ``guard_fraction`` holds out a stratified fraction of the labelled pool (after validation, before the
    k-shot draw, never the test rows) for the negative-transfer guard alone: no run trains or selects on it.
    """
    y = np.asarray(y)
    pool = np.arange(len(y))
    test = np.array([], dtype=np.int64)
    if test_fraction != "rest":
        pool, test = stratified_split(y, float(test_fraction), seed, pool)
    pool, val = stratified_split(y, val_fraction, seed + 1, pool)
    pool, guard = stratified_split(y, guard_fraction, seed + 3, pool)
    if shots == 0:  # domain adaptation without target labels: the source data are the training set
        train = np.array([], dtype=np.int64)
    elif shots is not None:
        train = k_shot(y, shots, seed + 2, pool)
    elif fraction is not None:
        train = label_fraction(y, fraction, seed + 2, pool)
    else:
        train = pool
    if test_fraction == "rest":
        test = np.setdiff1d(pool, train)
    return Splits(train=np.sort(train), val=np.sort(val), test=np.sort(test), guard=np.sort(guard))
