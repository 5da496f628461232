"""The classic methods that skada (Flamary, Gnassounou et al., scikit-adaptation/skada) provides,
as thin factories of skada pipelines: adapter, then the final classifier (1-NN by default, the
protocol of the JDA paper's tables; the reweighting methods need a classifier that takes sample
weights). skada and POT are imported when a method is built (the ``da`` extra).

Note: importing skada turns on scikit-learn's metadata routing for the whole process
(``sklearn.set_config(enable_metadata_routing=True)``); skada needs it.
"""

from __future__ import annotations

from types import ModuleType

from sklearn.neighbors import KNeighborsClassifier

from transferkit.errors import TransferkitError


def skada_module(method: str) -> ModuleType:
    """``import skada``, or a one-sentence error naming ``method`` and the extra that installs it."""
    try:
        import skada
    except ImportError as e:
        raise TransferkitError(f"Shallow method '{method}' comes from skada, which is not installed; "
                               "install it with `pip install 'transferkit[da]'`.") from e
    return skada


def _nn(estimator):
    return KNeighborsClassifier(n_neighbors=1) if estimator is None else estimator


def coral(estimator=None, reg: str | float = "auto"):
    """CORAL: align the source covariance to the target's (Sun, Feng, Saenko, AAAI 2016); skada's
    CORALAdapter. ``reg``: shrinkage of the covariances ("auto" = Ledoit-Wolf, or a float in [0, 1])."""
    return skada_module("coral").CORAL(base_estimator=_nn(estimator), reg=reg)


def tca(estimator=None, kernel: str = "linear", n_components: int = 100, mu: float = 1.0):
    """Transfer Component Analysis (Pan, Tsang, Kwok, Yang, IEEE TNN 2011); skada's adapter.
    ``mu``: the trade-off of TCA's objective (skada's name); ``kernel``: a scikit-learn kernel name."""
    return skada_module("tca").TransferComponentAnalysis(base_estimator=_nn(estimator), kernel=kernel,
                                                        n_components=n_components, mu=mu)


def sa(estimator=None, n_components: int = 100, random_state: int | None = 0):
    """Subspace Alignment (Fernando, Habrard, Sebban, Tuytelaars, ICCV 2013): each domain's PCA
    basis, the source's aligned to the target's; skada's adapter."""
    return skada_module("sa").SubspaceAlignment(base_estimator=_nn(estimator), n_components=n_components,
                                                random_state=random_state)


def ot(estimator=None, metric: str = "sqeuclidean", norm: str | None = None, max_iter: int = 100_000):
    """Optimal-transport mapping (Courty, Flamary, Tuia, Rakotomamonjy, TPAMI 2017): source rows moved
    to the barycentre of their exact-OT plan's target rows; skada's OTMappingAdapter (POT)."""
    return skada_module("ot").OTMapping(base_estimator=_nn(estimator), metric=metric, norm=norm, max_iter=max_iter)


def kmm(estimator=None, kernel: str = "rbf", gamma: float | None = None, B: float = 1000.0, max_iter: int = 1000):
    """Kernel Mean Matching (Huang, Gretton, Borgwardt, Schoelkopf, Smola, NIPS 2006): source rows
    reweighted so that their kernel mean matches the target's; skada's KMMReweightAdapter. The
    classifier must take sample weights (default: skada's logistic regression)."""
    return skada_module("kmm").KMMReweight(base_estimator=estimator, kernel=kernel, gamma=gamma, B=B,
                                           max_iter=max_iter)
