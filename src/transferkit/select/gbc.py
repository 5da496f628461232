"""GBC: the Gaussian Bhattacharyya coefficient between the target classes in feature space.

Pándy et al., "Transferability Estimation using Bhattacharyya Class Separability", CVPR 2022.
"""

from __future__ import annotations

import numpy as np

from transferkit.errors import TransferkitError
from transferkit.select import checks

MIN_VARIANCE = 1e-4  # per-dimension floor on a class's variance (constant features), as the reference code
GAUSSIANS = ("spherical", "diagonal")


def _principal_components(f: np.ndarray, k: int) -> np.ndarray:
    """The centred rows of ``f`` projected on their first k principal axes."""
    f = f - f.mean(0, keepdims=True)
    if len(f) > f.shape[1]:  # eigenvectors of the D x D scatter matrix are cheaper for tall f
        _, vecs = np.linalg.eigh(f.T @ f)
        return f @ vecs[:, ::-1][:, :k]
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    return u[:, :k] * s[:k]


def _class_gaussians(f: np.ndarray, y: np.ndarray, num: int, gaussian: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-class means ``[C, d]`` and variances (``[C, d]``; spherical: the mean over dimensions)."""
    means = np.stack([f[y == c].mean(0) for c in range(num)])
    var = np.maximum(np.stack([f[y == c].var(0) for c in range(num)]), MIN_VARIANCE)
    return means, (var.mean(1, keepdims=True) if gaussian == "spherical" else var)


def bhattacharyya_distances(means: np.ndarray, var: np.ndarray, dim: int) -> np.ndarray:
    """Pairwise Bhattacharyya distances ``[C, C]`` between Gaussians with diagonal covariances:
    ``1/8 (m_i - m_j)^T S^-1 (m_i - m_j) + 1/2 log(det S / sqrt(det S_i det S_j))``, ``S = (S_i + S_j)/2``.

    Shape:
        means: ``[C, dim]``; var: ``[C, dim]`` (diagonal) or ``[C, 1]`` (spherical: one variance
        for all ``dim`` dimensions).
    """
    reps = dim / var.shape[1]  # a spherical variance stands for dim equal diagonal entries
    out = np.empty((len(means), len(means)))
    for i in range(len(means)):
        avg = (var[i] + var) / 2.0
        mahalanobis = ((means[i] - means) ** 2 / avg).sum(1)
        log_ratio = reps * (np.log(avg) - 0.5 * np.log(var[i]) - 0.5 * np.log(var)).sum(1)
        out[i] = mahalanobis / 8.0 + 0.5 * log_ratio
    return out


def gbc(features, labels, gaussian: str = "spherical", pca_dim: int | None = 64) -> float:
    """GBC (Pándy et al., CVPR 2022): ``-sum_{i != j} BC(c_i, c_j)``, the negated sum over ordered
    pairs of target classes of the Bhattacharyya coefficient ``exp(-D_B)`` between Gaussians fitted
    to each class's features. It lies in ``[-C(C - 1), 0]``; 0 (well separated classes) is best, so
    higher is better as for every score here (the paper defines it with this sign).

    As google-research/stable_transfer: the features are first projected on their first ``pca_dim``
    principal axes (64 there; fewer when N or D is smaller); a class's variance is the population
    variance per dimension, floored at 1e-4; a spherical Gaussian's variance is the mean of those.
    One deliberate difference: for spherical Gaussians the log-determinant term here counts all d
    dimensions (``det(s I_d) = s^d``), as the paper's Bhattacharyya distance does, while the
    reference code counts it once; so a spherical GBC equals the diagonal one whenever every
    dimension of each class has the same variance.

    Args:
        features: the candidate model's features of the target examples.
        labels: target class indices 0..C-1.
        gaussian: ``"spherical"`` (the reference's default) or ``"diagonal"`` covariances.
        pca_dim: the number of principal components kept, or None to use the features as given.

    Shape:
        features: ``[N, D]``; labels: ``[N]``.
    """
    if gaussian not in GAUSSIANS:
        raise TransferkitError(f"GBC: 'gaussian' must be one of {', '.join(GAUSSIANS)}; got {gaussian!r}.")
    if pca_dim is not None and (not isinstance(pca_dim, (int, np.integer)) or isinstance(pca_dim, bool) or pca_dim < 1):
        raise TransferkitError(f"GBC: 'pca_dim' must be an integer >= 1 or None; got {pca_dim!r}.")
    f = checks.features(features, "GBC")
    y, num = checks.labels(labels, "GBC", len(f))
    if pca_dim is not None:
        f = _principal_components(f, min(int(pca_dim), *f.shape))
    means, var = _class_gaussians(f, y, num, gaussian)
    coefficients = np.exp(-bhattacharyya_distances(means, var, f.shape[1]))
    return float(-(coefficients.sum() - np.trace(coefficients)))
