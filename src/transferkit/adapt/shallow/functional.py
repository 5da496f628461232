"""The maths of classic (shallow) domain adaptation, as pure numpy/scipy functions.

- The papers' preprocessing: ``l2_normalize`` (each sample to unit norm: the digits protocol of
  Long et al. 2013) and ``surf_zscore`` (row sums, then a column z-score within the domain: the
  Office-Caltech SURF protocol of the same paper).
- Joint Distribution Adaptation (M. Long, J. Wang, G. Ding, J. Sun, P. S. Yu, "Transfer Feature
  Learning with Joint Distribution Adaptation", ICCV 2013) and Balanced Distribution Adaptation
  (J. Wang, Y. Chen, S. Hao, W. Feng, Z. Shen, "Balanced Distribution Adaptation for Transfer
  Learning", ICDM 2017): the MMD matrix as a low-rank factor (``mmd_factor``), the generalised
  eigenproblem that gives the projection (``solve_projection``) and the pseudo-label loop
  (``joint_distribution_adaptation``). Checked against the authors' code
  (jindongwang/transferlearning, ``code/traditional/JDA``, ``BDA``): with it, 1-NN reproduces
  the JDA paper's table (BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg

from transferkit.errors import TransferkitError

KERNELS = ("primal", "linear", "rbf")


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Each row scaled to unit Euclidean norm (rows of zeros stay zero), as JDA's digits protocol
    and JDA's own code normalise every sample.

    Shape:
        x: ``[N, D]``; returns ``[N, D]`` float64.
    """
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def surf_zscore(x: np.ndarray) -> np.ndarray:
    """JDA's recipe for the SURF bag-of-words counts of one domain (Long et al. 2013): divide each
    row by its sum, then z-score each column within the domain (population std, ``ddof=0``); a
    constant column becomes 0. Apply it to each domain separately.

    Shape:
        x: ``[N, D]`` non-negative counts, every row with a positive sum; returns ``[N, D]`` float64.
    """
    x = np.asarray(x, dtype=np.float64)
    sums = x.sum(axis=1, keepdims=True)
    bad = np.flatnonzero((sums[:, 0] <= 0) | (x < 0).any(axis=1))
    if len(bad):
        raise TransferkitError(f"The z-score recipe divides each row by its sum and needs non-negative counts with a "
                               f"positive sum, which row {bad[0]} lacks; use the l2 (or no) preprocessing for such data.")
    p = x / sums
    std = p.std(axis=0)
    return (p - p.mean(axis=0)) / np.where(std > 0, std, 1.0)


def mmd_factor(y_src: np.ndarray, n_tgt: int, y_tgt: np.ndarray | None = None, mu: float = 0.5,
               weighted: bool = False) -> np.ndarray:
    """A factor ``E`` with ``E E^T = (1 - mu) C M0 + mu sum_c Mc``, the MMD matrix of BDA (Wang et
    al. 2017, eq. 4-6); JDA's ``M0 + sum_c Mc`` (Long et al. 2013, eq. 3-5) is ``mu = 1/2`` up to
    a scale, which the Frobenius normalisation in ``solve_projection`` removes.

    ``M0 = e0 e0^T`` with ``e0`` = ``1/ns`` on the source rows and ``-1/nt`` on the target rows
    (marginal MMD); ``Mc = ec ec^T`` with ``ec`` = ``1/ns_c`` on the source rows of class c and
    ``-alpha_c/nt_c`` on the target rows labelled c (0 when there are none), ``alpha_c = 1``, or the
    class-prior ratio ``Pt(c)/Ps(c)`` when ``weighted`` (W-BDA). The factor C (number of source
    classes) on M0 is the authors' code's ("for better normalization"), with which the papers'
    tables were made. Without target labels (the first iteration) the factor is ``sqrt(C) e0``
    alone, the marginal term.

    Shape:
        y_src: ``[ns]``; y_tgt: ``[nt]`` (pseudo-)labels or None; returns ``[ns + nt, r]``.
    """
    y_src = np.asarray(y_src)
    ns = len(y_src)
    classes = np.unique(y_src)
    e0 = np.concatenate([np.full(ns, 1.0 / ns), np.full(n_tgt, -1.0 / n_tgt)])
    if y_tgt is None:
        return np.sqrt(len(classes)) * e0[:, None]
    columns = [np.sqrt((1.0 - mu) * len(classes)) * e0]
    for c in classes:
        src, tgt = y_src == c, np.asarray(y_tgt) == c
        alpha = (tgt.mean() / src.mean()) if weighted else 1.0
        ec = np.zeros(ns + n_tgt)
        ec[:ns][src] = 1.0 / src.sum()
        if tgt.any():
            ec[ns:][tgt] = -alpha / tgt.sum()
        columns.append(np.sqrt(mu) * ec)
    return np.stack(columns, axis=1)


def kernel_matrix(a: np.ndarray, b: np.ndarray, kernel: str, gamma: float = 1.0) -> np.ndarray:
    """``linear``: ``a b^T``; ``rbf``: ``exp(-gamma ||a_i - b_j||^2)``.

    Shape:
        a: ``[N, D]``, b: ``[M, D]``; returns ``[N, M]``.
    """
    if kernel == "linear":
        return a @ b.T
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.exp(-gamma * np.maximum(d2, 0.0))


def kernel_basis(x: np.ndarray, kernel: str, gamma: float = 1.0) -> tuple[np.ndarray, np.ndarray | None]:
    """Coordinates ``F`` of the rows in which the eigenproblem is solved, and the basis ``U``.

    ``primal``: ``F = X`` (the projection acts on the features; ``U`` is None). Kernels: the
    papers' problem is in n x n (``K M K``, ``K H K``); with ``K = U diag(w) U^T`` (w > 0) it is
    the same problem in ``F = U diag(w)`` for coefficients ``c = U^T a``, since directions in K's
    null space get the eigenvalue phi = inf, never among the smallest. For the linear kernel
    ``U`` comes from the smaller of ``X^T X`` and ``X X^T``.

    Shape:
        x: ``[N, D]``; returns F ``[N, r]`` and U ``[N, r]`` (or None).
    """
    if kernel == "primal":
        return x, None
    n, m = x.shape
    if kernel == "linear" and m < n:
        w, vecs = np.linalg.eigh(x.T @ x)
        keep = w > w.max() * max(n, m) * np.finfo(float).eps
        u = x @ vecs[:, keep] / np.sqrt(w[keep])
        w = w[keep]
    else:
        w, u = np.linalg.eigh(kernel_matrix(x, x, kernel, gamma))
        keep = w > w.max() * n * np.finfo(float).eps
        u, w = u[:, keep], w[keep]
    return u * w, u


def solve_projection(f: np.ndarray, e: np.ndarray, lam: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k eigenvectors of JDA's generalised eigenproblem (Long et al. 2013, eq. 6) with the
    smallest eigenvalues phi:

        (F^T M F + lam I) v = phi F^T H F v,   M = E E^T / ||E E^T||_F,   H = I - 11^T / n,

    each of unit norm (as MATLAB's ``eigs`` returns them in the authors' code; the embedding's
    geometry, and so 1-NN, depends on it) with its largest entry positive. Solved as the
    symmetric-definite ``F^T H F v = (1/phi) (F^T M F + lam I) v`` (the right side is positive
    definite for lam > 0, ``F^T H F`` may be singular), whose k largest eigenvalues are wanted,
    through the Cholesky factor ``L`` of the right side: ``L^-1 F^T H F L^-T u = (1/phi) u``,
    ``v = L^-T u`` (LAPACK's generalised solver is many times slower with threads on a busy machine).

    Shape:
        f: ``[n, d]``, e: ``[n, r]``; returns V ``[d, k]`` and phi ``[k]`` (ascending).
    """
    d = f.shape[1]
    fe = f.T @ e
    chol = scipy.linalg.cholesky(fe @ fe.T / np.linalg.norm(e.T @ e) + lam * np.eye(d), lower=True)
    fc = f - f.mean(axis=0)
    s = scipy.linalg.solve_triangular(chol, scipy.linalg.solve_triangular(chol, fc.T @ fc, lower=True).T, lower=True)
    inv_phi, u = scipy.linalg.eigh((s + s.T) / 2, subset_by_index=[d - k, d - 1], driver="evr")
    v = scipy.linalg.solve_triangular(chol.T, u[:, ::-1], lower=False)
    inv_phi = inv_phi[::-1]
    v = v / np.linalg.norm(v, axis=0)
    v = v * np.sign(v[np.abs(v).argmax(axis=0), np.arange(k)])
    with np.errstate(divide="ignore"):
        return v, 1.0 / inv_phi


@dataclass(frozen=True)
class Embedding:
    """A learnt projection: ``project(embedding, x)`` maps new rows as the training rows were.

    ``weights`` act on the l2-normalised inputs (``[D, k]``, primal and linear kernel) or on
    their rbf kernel with ``support``, the l2-normalised training rows (``[n, k]``).
    """

    kernel: str
    gamma: float
    weights: np.ndarray
    support: np.ndarray | None
    phi: np.ndarray


def project(emb: Embedding, x: np.ndarray) -> np.ndarray:
    """Rows l2-normalised, projected, and the embedding l2-normalised (the authors' code does both).

    Shape:
        x: ``[N, D]``; returns ``[N, k]``.
    """
    xn = l2_normalize(x)
    z = xn @ emb.weights if emb.support is None else kernel_matrix(xn, emb.support, emb.kernel, emb.gamma) @ emb.weights
    return l2_normalize(z)


@dataclass
class JointResult:
    """The outcome of ``joint_distribution_adaptation``: the projection, the training rows'
    embedding (source rows, then target rows), the last target pseudo-labels and the classifier
    fitted on the last embedding's source rows."""

    embedding: Embedding
    z: np.ndarray
    pseudo_labels: np.ndarray
    classifier: Any


def joint_distribution_adaptation(x_src: np.ndarray, y_src: np.ndarray, x_tgt: np.ndarray, *, n_components: int,
                                  lam: float, kernel: str, gamma: float, n_iter: int, mu: float, weighted: bool,
                                  fit_classifier: Callable[[np.ndarray, np.ndarray], Any]) -> JointResult:
    """JDA's Algorithm 1 (Long et al. 2013), BDA's with ``mu`` (Wang et al. 2017): ``n_iter``
    times, solve for the projection with the current target pseudo-labels (none at first: the
    marginal term alone, as TCA), embed and l2-normalise every row, fit the classifier on the
    source rows and relabel the target rows with it. ``n_iter=1`` is the marginal-only solution.

    Shape:
        x_src: ``[ns, D]``, y_src: ``[ns]``, x_tgt: ``[nt, D]``.
    """
    if n_iter < 1:
        raise TransferkitError(f"n_iter={n_iter}: JDA needs at least one eigen-solve; give n_iter >= 1.")
    x = l2_normalize(np.vstack([x_src, x_tgt]))
    ns = len(x_src)
    f, u = kernel_basis(x, kernel, gamma)
    if n_components > f.shape[1]:
        raise TransferkitError(f"n_components={n_components} exceeds the {f.shape[1]} dimensions that the data span "
                               f"with the {kernel} kernel; lower n_components.")
    pseudo = None
    for _ in range(n_iter):
        v, phi = solve_projection(f, mmd_factor(y_src, len(x_tgt), pseudo, mu, weighted), lam, n_components)
        z = l2_normalize(f @ v)
        classifier = fit_classifier(z[:ns], y_src)
        pseudo = classifier.predict(z[ns:])
    if kernel == "primal":
        emb = Embedding(kernel, gamma, v, None, phi)
    elif kernel == "linear":
        emb = Embedding(kernel, gamma, x.T @ (u @ v), None, phi)
    else:
        emb = Embedding(kernel, gamma, u @ v, x, phi)
    return JointResult(emb, z, pseudo, classifier)
