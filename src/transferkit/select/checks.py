"""Input checks shared by the transferability scores: each returns a float64 / int64 array or raises
a ``TransferkitError`` with one sentence that names the input and the fix, before any work is done."""

from __future__ import annotations

import numpy as np

from transferkit.errors import TransferkitError

PROB_ATOL = 1e-4  # rows of softmax outputs must sum to 1 within this (float32 round-off over many classes)


def _numeric(values, who: str, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TransferkitError(f"{who}: '{name}' must be a numeric array; got dtype {arr.dtype}.")
    return arr.astype(np.int64) if arr.dtype == bool else arr


def _finite(arr: np.ndarray, who: str, name: str) -> None:
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise TransferkitError(f"{who}: '{name}' holds {bad} NaN or infinite value(s); remove or impute those rows first.")


def features(values, who: str, name: str = "features") -> np.ndarray:
    """A finite ``[N, D]`` matrix with N >= 2, as float64.

    Shape:
        values: ``[N, D]``.
    """
    arr = _numeric(values, who, name)
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1:
        raise TransferkitError(f"{who}: '{name}' must be an [N, D] matrix (one row per target example, N >= 2, "
                               f"D >= 1); got shape {arr.shape}.")
    arr = arr.astype(np.float64)
    _finite(arr, who, name)
    return arr


def _column(values, who: str, name: str, n: int | None) -> np.ndarray:
    arr = _numeric(values, who, name)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or len(arr) == 0 or (n is not None and len(arr) != n):
        want = f"{n} (one per row of the features)" if n is not None else "N > 0"
        raise TransferkitError(f"{who}: '{name}' must be a vector of {want} values; got shape {arr.shape}.")
    _finite(arr, who, name)
    return arr


def _integers(arr: np.ndarray, who: str, name: str) -> np.ndarray:
    if not np.issubdtype(arr.dtype, np.integer) and not np.array_equal(arr, np.round(arr)):
        raise TransferkitError(f"{who}: '{name}' must be integer class indices; got non-integer values such as "
                               f"{arr[arr != np.round(arr)][0]!r}.")
    if arr.min() < 0:
        raise TransferkitError(f"{who}: '{name}' must be class indices >= 0; got {arr.min()!r} (re-encode them, e.g. "
                               f"with np.unique(labels, return_inverse=True)).")
    return arr.astype(np.int64)


def labels(values, who: str, n: int | None = None, name: str = "labels") -> tuple[np.ndarray, int]:
    """Target class indices ``0..C-1``, every class present, C >= 2; returns (int64 labels, C).

    Shape:
        values: ``[N]`` (or ``[N, 1]``).
    """
    arr = _integers(_column(values, who, name, n), who, name)
    present = np.unique(arr)
    num = int(present[-1]) + 1
    if len(present) < num:
        missing = int(np.flatnonzero(present != np.arange(len(present)))[0])
        raise TransferkitError(f"{who}: '{name}' must use every class index 0..C-1, but {missing} never occurs among "
                               f"0..{num - 1} (re-encode them, e.g. with np.unique(labels, return_inverse=True)).")
    if num < 2:
        raise TransferkitError(f"{who}: '{name}' must hold at least 2 classes to score a transfer; got only class 0.")
    return arr, num


def source_labels(values, who: str, n: int, name: str = "source_labels") -> np.ndarray:
    """Hard source-class indices >= 0 (classes may be absent, as most of a large source label set is).

    Shape:
        values: ``[N]``.
    """
    return _integers(_column(values, who, name, n), who, name)


def probabilities(values, who: str, n: int | None = None, name: str = "probs") -> np.ndarray:
    """Source-model class probabilities: a finite, non-negative ``[N, C_s]`` matrix whose rows sum to 1.

    Shape:
        values: ``[N, C_s]``.
    """
    arr = features(values, who, name)
    if n is not None and len(arr) != n:
        raise TransferkitError(f"{who}: '{name}' must have one row per target label ({n}); got {len(arr)} rows.")
    if (arr < 0).any():
        raise TransferkitError(f"{who}: '{name}' must be probabilities >= 0 (apply a softmax to logits first); got a "
                               f"minimum of {arr.min():g}.")
    worst = float(np.abs(arr.sum(1) - 1.0).max())
    if worst > PROB_ATOL:
        raise TransferkitError(f"{who}: each row of '{name}' must sum to 1 (apply a softmax to logits first); a row "
                               f"is off by {worst:g}.")
    return arr


def targets(values, who: str, n: int, name: str = "labels") -> np.ndarray:
    """Regression targets: a finite ``[N]`` or ``[N, K]`` array, returned as float64 ``[N, K]``.

    Shape:
        values: ``[N]`` or ``[N, K]``.
    """
    arr = _numeric(values, who, name)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or len(arr) != n or arr.shape[1] < 1:
        raise TransferkitError(f"{who}: regression '{name}' must be an [N] or [N, K] array with N = {n} (one row per "
                               f"row of the features); got shape {np.shape(values)}.")
    arr = arr.astype(np.float64)
    _finite(arr, who, name)
    return arr
