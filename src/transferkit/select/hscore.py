"""H-score and its shrinkage-regularised form.

Bao et al., "An Information-Theoretic Approach to Transferability in Task Transfer Learning",
ICIP 2019; Ibrahim et al., "Newer is not always better: Rethinking transferability metrics, their
peculiarities, stability and performance", ECML-PKDD 2022 (the Ledoit-Wolf regularised form).
"""

from __future__ import annotations

import numpy as np
from sklearn.covariance import LedoitWolf

from transferkit.select import checks

PINV_RCOND = 1e-15  # as the reference code (thuml/Transfer-Learning-Library)


def _between_class_cov(f: np.ndarray, y: np.ndarray, num: int) -> np.ndarray:
    """``cov(E[f | y])`` with ddof = 1: the covariance of the rows replaced by their class means."""
    counts = np.bincount(y, minlength=num).astype(np.float64)
    means = np.zeros((num, f.shape[1]))
    np.add.at(means, y, f)
    centred = means / counts[:, None] - f.mean(0)
    return (centred.T * counts) @ centred / (len(f) - 1)


def _trace_pinv_product(a: np.ndarray, b: np.ndarray) -> float:
    """``trace(pinv(a) @ b)`` without forming the product (``sum(pinv(a) * b.T)``)."""
    return float((np.linalg.pinv(a, rcond=PINV_RCOND) * b.T).sum())


def h_score(features, labels) -> float:
    """H-score (Bao et al., ICIP 2019): ``tr(cov(f)^+ cov(E[f | y]))``, the fraction of the feature
    covariance the class means explain, summed over directions; higher is better, at most C - 1.

    Both covariances use ddof = 1 and the pseudo-inverse cuts singular values below 1e-15 of the
    largest, as thuml/Transfer-Learning-Library does. With N <= D the feature covariance is singular
    and the score degenerates to C - 1 whatever the features; prefer ``h_score_regularised`` there.

    Args:
        features: the candidate model's features of the target examples.
        labels: target class indices 0..C-1.

    Shape:
        features: ``[N, D]``; labels: ``[N]``.
    """
    f = checks.features(features, "H-score")
    y, num = checks.labels(labels, "H-score", len(f))
    return _trace_pinv_product(np.cov(f, rowvar=False).reshape(f.shape[1], -1), _between_class_cov(f, y, num))


def h_score_regularised(features, labels) -> float:
    """Shrinkage-regularised H-score (Ibrahim et al., 2022): ``tr(cov_a(f)^+ (1 - a) cov(E[f | y]))``
    with ``cov_a`` scikit-learn's Ledoit-Wolf estimate of the centred features and ``a`` its shrinkage;
    higher is better.

    As thuml/Transfer-Learning-Library: the Ledoit-Wolf part divides by N, ``cov(E[f | y])`` by N - 1.

    Args:
        features: the candidate model's features of the target examples.
        labels: target class indices 0..C-1.

    Shape:
        features: ``[N, D]``; labels: ``[N]``.
    """
    f = checks.features(features, "Regularised H-score")
    y, num = checks.labels(labels, "Regularised H-score", len(f))
    f = f - f.mean(0, keepdims=True)
    lw = LedoitWolf(assume_centered=False).fit(f)
    return _trace_pinv_product(lw.covariance_, (1.0 - lw.shrinkage_) * _between_class_cov(f, y, num))
