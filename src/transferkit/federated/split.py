"""Non-IID client shares: label skew by a Dirichlet draw per class (pure functions on labels).

Each class's rows go to the clients in proportions drawn from Dirichlet(alpha, ..., alpha), the
per-class form of label skew (Yurochkin et al., 2019; Wang et al., 2020, FedMA) that most federated
benchmarks use; Hsu, Qi and Brown (2019) draw each client's class mix from Dirichlet(alpha * prior)
instead. A small alpha gives each client few classes, a large one near-IID shares.
"""

from __future__ import annotations

import numpy as np

from transferkit.errors import TransferkitError

MAX_DRAWS = 100  # redraws allowed before a split that leaves a client too few rows is refused


def dirichlet_label_split(labels: np.ndarray, clients: int, alpha: float, seed: int, min_rows: int = 1) -> list[np.ndarray]:
    """Split row indices over ``clients`` with each class's rows shared in Dirichlet(``alpha``) proportions.

    The draw is repeated (same seeded generator) until every client holds at least ``min_rows`` rows.
    Every row lands in exactly one client; the same ``seed`` gives the same split.

    Shape:
        labels: ``[N]`` class indices; returns ``clients`` sorted index arrays whose sizes sum to ``N``.

    Example:
        >>> shares = dirichlet_label_split(y, clients=5, alpha=0.5, seed=0)
    """
    y = np.asarray(labels)
    if y.ndim != 1 or (y.size and y.dtype.kind not in "iu"):
        raise TransferkitError("dirichlet_label_split: 'labels' must be a 1-D array of class indices; "
                               f"got shape {y.shape} of {y.dtype}.")
    if not isinstance(clients, (int, np.integer)) or clients < 1:
        raise TransferkitError(f"dirichlet_label_split: 'clients' must be an integer >= 1; got {clients!r}.")
    if not alpha > 0:
        raise TransferkitError(f"dirichlet_label_split: 'alpha' must be a number > 0; got {alpha!r}.")
    if clients * min_rows > len(y):
        raise TransferkitError(f"{len(y)} rows cannot give {clients} clients {min_rows} rows each; "
                               "use fewer clients or a smaller federated.min_rows.")
    rng = np.random.default_rng(seed)
    for _ in range(MAX_DRAWS):
        shares: list[list[np.ndarray]] = [[] for _ in range(clients)]
        for c in np.unique(y):
            rows = rng.permutation(np.flatnonzero(y == c))
            cuts = (np.cumsum(rng.dirichlet(np.full(clients, float(alpha)))) * len(rows)).astype(int)[:-1]
            for k, part in enumerate(np.split(rows, cuts)):
                shares[k].append(part)
        out = [np.sort(np.concatenate(s)).astype(np.int64) for s in shares]
        if min(len(s) for s in out) >= min_rows:
            return out
    raise TransferkitError(f"No Dirichlet(alpha={alpha}) split in {MAX_DRAWS} draws gave each of the {clients} "
                           f"clients {min_rows} rows; raise federated.alpha or lower federated.min_rows.")


def label_counts(labels: np.ndarray, shares: list[np.ndarray], num_classes: int) -> np.ndarray:
    """Rows of each class at each client.

    Shape:
        returns ``[clients, num_classes]``.
    """
    y = np.asarray(labels)
    return np.stack([np.bincount(y[s], minlength=num_classes) for s in shares])


def label_skew(labels: np.ndarray, shares: list[np.ndarray], num_classes: int) -> float:
    """Mean total-variation distance between each client's label distribution and the pooled one:
    0 for identical (IID) shares, near 1 when each client holds classes the others lack."""
    counts = label_counts(labels, shares, num_classes).astype(float)
    pooled = counts.sum(0) / counts.sum()
    local = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    return float(0.5 * np.abs(local - pooled).sum(1).mean())
