"""TransRate: the coding-rate gain of the features from knowing the target classes.

Huang et al., "Frustratingly Easy Transferability Estimation", ICML 2022.
"""

from __future__ import annotations

import numpy as np

from transferkit.errors import TransferkitError
from transferkit.select import checks


def coding_rate(z: np.ndarray, eps: float) -> float:
    """``R(Z, eps) = 1/2 logdet(I + Z^T Z / (n eps))`` for the n rows of Z (natural log), through the
    smaller of ``Z^T Z`` and ``Z Z^T`` (they have the same determinant here).

    Shape:
        z: ``[n, d]``.
    """
    n, d = z.shape
    gram = z.T @ z if d <= n else z @ z.T
    _, logdet = np.linalg.slogdet(np.eye(len(gram)) + gram / (n * eps))
    return 0.5 * float(logdet)


def transrate(features, labels, eps: float = 1e-4) -> float:
    """TransRate (Huang et al., ICML 2022): ``R(F, eps) - 1/C sum_c R(F_c, eps)``, the coding rate of
    the centred features minus the unweighted mean over classes of that of each class's rows;
    higher is better.

    As thuml/Transfer-Learning-Library: features are centred once over all rows (a class's rows are
    not re-centred) and the class mean is not weighted by class size. The value grows with D and is
    comparable between candidates of the same D only roughly.

    Args:
        features: the candidate model's features of the target examples.
        labels: target class indices 0..C-1.
        eps: the distortion rate (> 0).

    Shape:
        features: ``[N, D]``; labels: ``[N]``.
    """
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps > 0 or not np.isfinite(eps):
        raise TransferkitError(f"TransRate: 'eps' must be a finite number > 0; got {eps!r}.")
    f = checks.features(features, "TransRate")
    y, num = checks.labels(labels, "TransRate", len(f))
    f = f - f.mean(0, keepdims=True)
    within = sum(coding_rate(f[y == c], eps) for c in range(num))
    return coding_rate(f, eps) - within / num
