"""Classic (shallow) domain adaptation on feature vectors: scikit-learn estimators with skada's
conventions (``fit(X, y, sample_domain)``, ``sample_domain`` > 0 for source rows and < 0 for
target rows, target labels -1; then ``predict`` / ``transform``).

``SHALLOW`` maps a method name to a factory of a fresh estimator: the methods skada provides
(``from_skada``: coral, tca, sa, ot, kmm) and the two written here (``jda``: JDA, BDA). The
maths of the latter, and the papers' preprocessing, are pure functions in ``functional``.

Example:
    >>> est = SHALLOW.build("jda", n_components=100, lam=0.1)
    >>> est.fit(X, y, sample_domain=sd).predict(X[sd < 0])
"""

from __future__ import annotations

from transferkit.adapt.shallow import from_skada
from transferkit.adapt.shallow.functional import l2_normalize, surf_zscore
from transferkit.adapt.shallow.jda import BDA, JDA
from transferkit.registry import Registry

SHALLOW: Registry = Registry("shallow method")

SHALLOW.register("coral")(from_skada.coral)
SHALLOW.register("tca")(from_skada.tca)
SHALLOW.register("sa")(from_skada.sa)
SHALLOW.register("ot")(from_skada.ot)
SHALLOW.register("kmm")(from_skada.kmm)


@SHALLOW.register("jda")
def jda(n_components: int = 100, lam: float = 0.1, kernel: str = "primal", gamma: float = 1.0, n_iter: int = 10,
        estimator=None) -> JDA:
    """Joint Distribution Adaptation (Long et al., ICCV 2013): marginal and class-conditional MMD,
    iterated target pseudo-labels; written here."""
    return JDA(n_components, lam, kernel, gamma, n_iter, estimator).check_params()


@SHALLOW.register("bda")
def bda(n_components: int = 100, lam: float = 0.1, kernel: str = "primal", gamma: float = 1.0, n_iter: int = 10,
        mu: float = 0.5, weighted: bool = False, estimator=None) -> BDA:
    """Balanced Distribution Adaptation (Wang et al., ICDM 2017): JDA with a balance factor mu between
    the marginal and conditional MMD, optionally class-weighted (W-BDA); written here."""
    return BDA(n_components, lam, kernel, gamma, n_iter, mu, weighted, estimator).check_params()


def create_shallow(name: str, **kwargs):
    """A fresh estimator of the shallow method ``name`` with ``kwargs`` (checked against its factory)."""
    return SHALLOW.build(name, **kwargs)


__all__ = ["BDA", "JDA", "SHALLOW", "create_shallow", "l2_normalize", "surf_zscore"]
