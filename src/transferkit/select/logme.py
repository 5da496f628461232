"""LogME: the log of the maximum evidence of a Bayesian linear model from the features to the targets.

You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML 2021;
the fixed-point algorithm of You et al., "Ranking and Tuning Pre-trained Models: A New Paradigm for
Exploiting Model Hubs", JMLR 2022 (arXiv:2110.10545).

For every target column y (classification: the 0/1 indicator of each class, one-vs-rest;
regression: each target column as given) the model is ``y = F w + noise`` with ``w ~ N(0, 1/alpha I)``
and noise ``N(0, 1/beta I)``; alpha and beta maximise the evidence

    log p(y | alpha, beta) = D/2 log alpha + N/2 log beta - 1/2 sum_i log(alpha + beta sigma_i)
                             - beta/2 ||y - F m||^2 - alpha/2 ||m||^2 - N/2 log 2 pi,

sigma_i the D eigenvalues of F^T F and m the posterior mean. The score is the mean over columns of
the maximum evidence divided by N (higher is better). Features are used as given (no centring, no
bias column), as in the reference code (thuml/LogME).

Both algorithms share one decomposition of F per target dataset (an SVD of F when N <= D; of the
D x D matrix F^T F otherwise) and run their scalar iterations on all columns at once. The evidence
counts all D eigenvalues: when F has rank k < D (always when N < D) the D - k zero eigenvalues add
``-(D - k)/2 log alpha``, which the reference fixed-point code drops (thuml/LogME issue #23, PR #24).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from transferkit.errors import TransferkitError
from transferkit.select import checks

MAX_ITER = 11  # the reference's cap; it converges in a few steps
EPS = 1e-5  # added to ||m||^2 and the residual in the updates (and, for "icml", in the evidence)
RANK_TOL = 1e-10  # singular values below this (from F^T F) count as zero
# algorithm -> (relative change of alpha/beta that stops it, stop on "<" rather than "<=", eps in the evidence)
ALGORITHMS = {"fixed_point": (1e-3, False, 0.0), "icml": (1e-2, True, EPS)}


@dataclass(frozen=True)
class LogMEFit:
    """What one LogME fit found, per class (classification) or target column (regression).

    Attributes:
        score: the LogME score, the mean of ``evidences``.
        evidences: ``[C]`` maximum log evidence of each column, divided by N.
        alphas: ``[C]`` prior precisions of the weights.
        betas: ``[C]`` noise precisions.
        weights: ``[C, D]`` posterior mean weights (one row per column).
        regression: whether the targets were regression targets.
    """

    score: float
    evidences: np.ndarray
    alphas: np.ndarray
    betas: np.ndarray
    weights: np.ndarray
    regression: bool

    def predict(self, features) -> np.ndarray:
        """Class indices (arg-max of ``features @ weights.T``) or the regression outputs ``[N, K]``.

        Shape:
            features: ``[N, D]`` with the D of the fit.
        """
        f = checks.features(features, "LogME.predict")
        if f.shape[1] != self.weights.shape[1]:
            raise TransferkitError(f"LogME.predict: 'features' must have the {self.weights.shape[1]} columns of the "
                                   f"fitted features; got {f.shape[1]}.")
        out = f @ self.weights.T
        return out if self.regression else out.argmax(1)


def _targets(labels, n: int, regression: bool) -> tuple[np.ndarray | sparse.csr_matrix, np.ndarray]:
    """The target columns (a sparse one-hot matrix for classes) and their squared norms."""
    if regression:
        y = checks.targets(labels, "LogME", n)
        return y, (y ** 2).sum(0)
    y, num = checks.labels(labels, "LogME", n)
    onehot = sparse.csr_matrix((np.ones(n), (np.arange(n), y)), shape=(n, num))
    return onehot, np.bincount(y, minlength=num).astype(np.float64)


def _spectrum(f: np.ndarray, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Singular values s [k], right singular vectors vh [k, D] and the targets' coordinates
    ``x = U^T y`` [k, C] on the left singular vectors, for the rank k of F."""
    n, d = f.shape
    if n > d:  # the D x D Gram matrix is cheaper to decompose than F
        _, s2, vh = np.linalg.svd(f.T @ f)
        s = np.sqrt(s2)
        k = int((s > RANK_TOL).sum())
        s, vh = s[:k], vh[:k]
        u = (f @ vh.T) / s
    else:
        u, s, vh = np.linalg.svd(f, full_matrices=False)
    x = (y.T @ u).T if sparse.issparse(y) else u.T @ y
    return s, vh, np.asarray(x)


def _maximise(sigma: np.ndarray, x2: np.ndarray, rest: np.ndarray, n: int, tol: float, strict: bool):
    """MacKay's updates of alpha and beta for every column at once, each column stopping on its own.

    Returns alpha, beta (the last update), and the ratio t = alpha / beta, ||m||^2 and the squared
    residual of the iteration that produced them, as the reference evaluates the evidence.
    """
    cols = x2.shape[1]
    alpha, beta = np.ones(cols), np.ones(cols)
    t, m2, res2 = np.ones(cols), np.zeros(cols), np.zeros(cols)
    active = np.ones(cols, dtype=bool)
    sig = sigma[:, None]
    for _ in range(MAX_ITER):
        idx = np.flatnonzero(active)
        t_i = alpha[idx] / beta[idx]
        with np.errstate(divide="ignore", invalid="ignore"):  # rank-0 features: alpha = t = 0 after one step
            gamma = (sig / (sig + t_i)).sum(0)  # effective number of parameters
            m2_i = (sig * x2[:, idx] / (t_i + sig) ** 2).sum(0)
            res2_i = (x2[:, idx] / (1 + sig / t_i) ** 2).sum(0) + rest[idx]
            alpha[idx] = gamma / (m2_i + EPS)
            beta[idx] = (n - gamma) / (res2_i + EPS)
            change = np.abs(alpha[idx] / beta[idx] - t_i) / t_i
        t[idx], m2[idx], res2[idx] = t_i, m2_i, res2_i
        active[idx[change < tol if strict else change <= tol]] = False
        if not active.any():
            break
    return alpha, beta, t, m2, res2


def log_evidence(alpha, beta, m2, res2, sigma: np.ndarray, n: int, d: int) -> np.ndarray:
    """The log evidence divided by N, with all D eigenvalues (those beyond ``len(sigma)`` are 0).

    ``D/2 log alpha - 1/2 sum_i log(alpha + beta sigma_i)`` over all D eigenvalues is computed as
    ``-1/2 sum_i log(1 + beta sigma_i / alpha)`` over the k non-zero ones: the D - k zero eigenvalues
    cancel exactly, and features of rank 0 give a finite evidence.

    Shape:
        alpha, beta, m2, res2: ``[C]``; sigma: ``[k]`` with k <= D.
    """
    log_ratio = np.log1p(beta * sigma[:, None] / alpha).sum(0) if len(sigma) else 0.0
    return (n / 2.0 * np.log(beta) - 0.5 * log_ratio - beta / 2.0 * res2 - alpha / 2.0 * m2
            - n / 2.0 * np.log(2 * np.pi)) / n


def logme_fit(features, labels, *, regression: bool = False, algorithm: str = "fixed_point") -> LogMEFit:
    """LogME (You et al., ICML 2021 / JMLR 2022) with its per-column alphas, betas and weights.

    Args:
        features: the candidate model's features of the target examples.
        labels: target class indices 0..C-1, or regression targets when ``regression``.
        regression: score regression targets (one evidence per column) instead of classes.
        algorithm: ``"fixed_point"`` (the JMLR paper's, thuml/LogME's default) or ``"icml"`` (the
            ICML paper's Algorithm 1 as thuml/LogME's ``_fit_icml``: stops at a 1 % change and adds
            its 1e-5 to the evidence too). They agree to about 1e-4.

    Shape:
        features: ``[N, D]``; labels: ``[N]`` (classes) or ``[N]`` / ``[N, K]`` (regression).

    Example:
        >>> fit = logme_fit(feats, y)
        >>> fit.score, fit.predict(feats)
    """
    if algorithm not in ALGORITHMS:
        raise TransferkitError(f"LogME: 'algorithm' must be one of {', '.join(ALGORITHMS)}; got {algorithm!r}.")
    f = checks.features(features, "LogME")
    y, y2 = _targets(labels, len(f), regression)
    n, d = f.shape
    tol, strict, eps = ALGORITHMS[algorithm]
    s, vh, x = _spectrum(f, y)
    sigma, x2 = s ** 2, x ** 2
    alpha, beta, t, m2, res2 = _maximise(sigma, x2, y2 - x2.sum(0), n, tol, strict)
    evidences = log_evidence(alpha, beta, m2 + eps, res2 + eps, sigma, n, d)
    weights = (vh.T @ (s[:, None] * x / (t + sigma[:, None]))).T
    return LogMEFit(float(evidences.mean()), evidences, alpha, beta, weights, regression)


def logme(features, labels, *, regression: bool = False, algorithm: str = "fixed_point") -> float:
    """LogME score (You et al., ICML 2021; fixed-point algorithm of JMLR 2022): the mean over classes
    (or target columns) of the maximum log evidence per example; higher is better.

    See ``logme_fit`` for the arguments.

    Shape:
        features: ``[N, D]``; labels: ``[N]`` (classes) or ``[N]`` / ``[N, K]`` (regression).
    """
    return logme_fit(features, labels, regression=regression, algorithm=algorithm).score
