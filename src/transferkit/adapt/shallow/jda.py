"""JDA and BDA as scikit-learn estimators (skada's conventions: ``fit(X, y, sample_domain)`` with
``sample_domain`` > 0 for source rows and < 0 for target rows, target labels masked as -1).

Each is a transformer (``transform``: the learnt embedding) and a classifier (``predict``: the
classifier fitted on the embedded source rows, 1-NN by default, as in the papers). They request
``sample_domain`` through scikit-learn's metadata routing, so they drop into a ``Pipeline``, a
``GridSearchCV`` or skada's ``make_da_pipeline``. The maths is in ``functional``.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils.validation import check_is_fitted

from transferkit.adapt.shallow.functional import KERNELS, joint_distribution_adaptation, project
from transferkit.errors import TransferkitError

MASKED = -1  # the label of target rows (skada's convention)


def check_domain_data(what: str, x, y, sample_domain) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``X`` as a finite 2-D float array, ``y`` as labels, ``sample_domain`` (inferred from ``y == -1``
    when None); one-sentence errors naming ``what`` for anything that does not fit."""
    x = check_features(what, x)
    if y is None:
        raise TransferkitError(f"{what}: fit needs y, the source labels (-1 for target rows).")
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(x):
        raise TransferkitError(f"{what}: X has {len(x)} rows but y has shape {y.shape}; give one label per row "
                               "(-1 for target rows).")
    sd = np.where(y == MASKED, -1, 1) if sample_domain is None else np.asarray(sample_domain)
    if sd.shape != y.shape or not np.issubdtype(sd.dtype, np.integer) or (sd == 0).any():
        raise TransferkitError(f"{what}: sample_domain must hold one non-zero integer per row (> 0 source, "
                               f"< 0 target); got shape {sd.shape}, dtype {sd.dtype}.")
    if not (sd > 0).any() or not (sd < 0).any():
        side = "source" if not (sd > 0).any() else "target"
        raise TransferkitError(f"{what}: there are no {side} rows; give both labelled source rows (sample_domain > 0) "
                               "and unlabelled target rows (sample_domain < 0).")
    if (y[sd > 0] == MASKED).any():
        raise TransferkitError(f"{what}: {int((y[sd > 0] == MASKED).sum())} source rows are labelled -1 (masked); "
                               "give every source row its label.")
    return x, y, sd


def check_features(what: str, x, n_features: int | None = None) -> np.ndarray:
    """``x`` as a finite ``[N, D]`` float64 array with ``n_features`` columns when given."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise TransferkitError(f"{what}: X must be a 2-D array [n_samples, n_features]; got shape {x.shape}.")
    if not np.isfinite(x).all():
        raise TransferkitError(f"{what}: X contains NaN or infinite values; clean or impute them first.")
    if n_features is not None and x.shape[1] != n_features:
        raise TransferkitError(f"{what}: X has {x.shape[1]} features but the estimator was fitted on {n_features}; "
                               "give rows with the same features.")
    return x


def _check_number(what: str, name: str, value, kind: type, low: float, high: float = np.inf,
                  open_low: bool = False) -> None:
    ok = isinstance(value, kind) and not isinstance(value, bool) and (value > low if open_low else value >= low)
    if not ok or value > high:
        rng = f"> {low}" if open_low else f">= {low}" if high == np.inf else f"in [{low}, {high}]"
        raise TransferkitError(f"{what}: '{name}' must be {'an integer' if kind is numbers.Integral else 'a number'} "
                               f"{rng}; got {value!r}.")


class JDA(ClassifierMixin, TransformerMixin, BaseEstimator):
    """Joint Distribution Adaptation (Long et al., ICCV 2013): a projection that shrinks the MMD of
    the marginal and of the class-conditional distributions, with target pseudo-labels refined
    ``n_iter`` times.

    Args:
        n_components: k, the embedding's dimension (paper: 100).
        lam: lambda, the ridge on the projection (paper: 0.1 for digits, 1.0 for SURF).
        kernel: ``primal`` (a linear map of the features), ``linear`` or ``rbf`` (kernel form).
        gamma: the rbf kernel's bandwidth ``exp(-gamma ||x - x'||^2)``.
        n_iter: T, the eigen-solves; the first uses the marginal term alone, each later one the
            previous pseudo-labels (paper: 10). ``n_iter=1`` is the marginal-only (TCA-like) solution.
        estimator: the classifier of the pseudo-labels and of ``predict`` (default 1-NN).

    Example:
        >>> jda = JDA(n_components=100, lam=0.1).fit(X, y, sample_domain=sd)  # y = -1 on target rows
        >>> target_pred = jda.predict(X[sd < 0])
    """

    __metadata_request__fit = {"sample_domain": True}
    __metadata_request__transform = {"sample_domain": True, "allow_source": True}
    __metadata_request__predict = {"sample_domain": True, "allow_source": True}
    __metadata_request__score = {"sample_domain": True, "allow_source": True}

    def __init__(self, n_components: int = 100, lam: float = 0.1, kernel: str = "primal", gamma: float = 1.0,
                 n_iter: int = 10, estimator=None) -> None:
        self.n_components = n_components
        self.lam = lam
        self.kernel = kernel
        self.gamma = gamma
        self.n_iter = n_iter
        self.estimator = estimator

    def _balance(self) -> tuple[float, bool]:
        return 0.5, False  # M0 + sum_c Mc (see functional.mmd_factor)

    def check_params(self) -> "JDA":
        """Raise a one-sentence error for the first argument out of its range; return self."""
        what = type(self).__name__
        _check_number(what, "n_components", self.n_components, numbers.Integral, 1)
        _check_number(what, "lam", self.lam, numbers.Real, 0, open_low=True)
        _check_number(what, "gamma", self.gamma, numbers.Real, 0, open_low=True)
        _check_number(what, "n_iter", self.n_iter, numbers.Integral, 1)
        if self.kernel not in KERNELS:
            raise TransferkitError(f"{what}: 'kernel' must be one of {', '.join(KERNELS)}; got {self.kernel!r}.")
        if self.estimator is not None and not hasattr(self.estimator, "fit"):
            raise TransferkitError(f"{what}: 'estimator' must be a scikit-learn classifier; got {self.estimator!r}.")
        return self

    def _fit(self, x, y, sample_domain) -> np.ndarray:
        self.check_params()
        x, y, sd = check_domain_data(type(self).__name__, x, y, sample_domain)
        src = sd > 0
        mu, weighted = self._balance()
        base = self.estimator if self.estimator is not None else KNeighborsClassifier(n_neighbors=1)
        res = joint_distribution_adaptation(
            x[src], y[src], x[~src], n_components=self.n_components, lam=self.lam, kernel=self.kernel,
            gamma=self.gamma, n_iter=self.n_iter, mu=mu, weighted=weighted,
            fit_classifier=lambda z, labels: clone(base).fit(z, labels))
        self.embedding_, self.classifier_ = res.embedding, res.classifier
        self.classes_ = np.unique(y[src])
        self.n_features_in_ = x.shape[1]
        self.pseudo_labels_ = res.pseudo_labels  # the target rows' labels after the last iteration
        z = np.empty((len(x), res.z.shape[1]))
        z[src], z[~src] = res.z[: src.sum()], res.z[src.sum():]
        return z

    def fit(self, X, y, sample_domain=None) -> "JDA":
        """Learn the projection from the source rows (labelled) and the target rows (y = -1).

        Shape:
            X: ``[N, D]``; y: ``[N]``; sample_domain: ``[N]`` (> 0 source, < 0 target) or None.
        """
        self._fit(X, y, sample_domain)
        return self

    def fit_transform(self, X, y=None, sample_domain=None, **params) -> np.ndarray:
        """``fit``, then the training rows' embedding (in the order given)."""
        return self._fit(X, y, sample_domain)

    def transform(self, X, sample_domain=None, allow_source: bool = True) -> np.ndarray:
        """The embedding of any rows (source and target rows are projected alike).

        Shape:
            X: ``[N, D]``; returns ``[N, n_components]``.
        """
        check_is_fitted(self, "embedding_")
        return project(self.embedding_, check_features(type(self).__name__, X, self.n_features_in_))

    def predict(self, X, sample_domain=None, allow_source: bool = True) -> np.ndarray:
        """The classes that the classifier fitted on the embedded source rows gives ``X``."""
        return self.classifier_.predict(self.transform(X))

    def score(self, X, y, sample_weight=None, sample_domain=None, allow_source: bool = True) -> float:
        """Accuracy over the rows whose label is known (y != -1)."""
        y = np.asarray(y)
        known = y != MASKED
        if not known.any():
            raise TransferkitError(f"{type(self).__name__}: score needs labelled rows; every y is -1.")
        hits = (self.predict(np.asarray(X)[known]) == y[known]).astype(float)
        return float(np.average(hits, weights=None if sample_weight is None else np.asarray(sample_weight)[known]))


class BDA(JDA):
    """Balanced Distribution Adaptation (Wang et al., ICDM 2017): JDA with the marginal and the
    conditional MMD weighed by a balance factor, ``(1 - mu) M0 + mu sum_c Mc``; ``weighted``
    scales each class's target mean by its prior ratio Pt(c)/Ps(c) (W-BDA, for unbalanced classes).

    Args:
        mu: the balance factor in [0, 1]: 0 = marginal only (as TCA), 1 = conditional only; JDA's
            equal sum is 0.5.
        weighted: W-BDA's class-prior weights.
        n_components, lam, kernel, gamma, n_iter, estimator: as ``JDA``.
    """

    def __init__(self, n_components: int = 100, lam: float = 0.1, kernel: str = "primal", gamma: float = 1.0,
                 n_iter: int = 10, mu: float = 0.5, weighted: bool = False, estimator=None) -> None:
        super().__init__(n_components=n_components, lam=lam, kernel=kernel, gamma=gamma, n_iter=n_iter,
                         estimator=estimator)
        self.mu = mu
        self.weighted = weighted

    def _balance(self) -> tuple[float, bool]:
        return float(self.mu), bool(self.weighted)

    def check_params(self) -> "BDA":
        super().check_params()
        _check_number("BDA", "mu", self.mu, numbers.Real, 0, 1)
        if not isinstance(self.weighted, (bool, np.bool_)):
            raise TransferkitError(f"BDA: 'weighted' must be true or false; got {self.weighted!r}.")
        return self
