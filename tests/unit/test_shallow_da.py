"""Classic domain adaptation (adapt.shallow): the papers' preprocessing and JDA/BDA's maths against
hand computations on tiny inputs, the estimators in scikit-learn's Pipeline and GridSearchCV, every
registered method on an easy shift, and one-sentence errors."""

import sys

import numpy as np
import pytest
import scipy.linalg
import sklearn
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from transferkit.adapt.shallow import BDA, JDA, SHALLOW, l2_normalize, surf_zscore
from transferkit.adapt.shallow.functional import kernel_basis, mmd_factor, solve_projection
from transferkit.errors import TransferkitError


def shifted(n=24, d=6, classes=3, seed=0):
    """Source: class means on the axes plus noise; target: the same classes scaled and shifted."""
    rng = np.random.default_rng(seed)
    ys, yt = np.arange(n) % classes, (np.arange(n) + 1) % classes
    xs = 3.0 * np.eye(classes, d)[ys] + 0.5 * rng.normal(size=(n, d))
    xt = 1.5 * (3.0 * np.eye(classes, d)[yt] + 0.5 * rng.normal(size=(n, d))) + 1.0
    x = np.vstack([xs, xt])
    y = np.concatenate([ys, -np.ones(n, dtype=int)])
    sd = np.concatenate([np.ones(n, dtype=int), -np.ones(n, dtype=int)])
    return x, y, sd, yt


def same_up_to_sign(a, b, atol=1e-8):
    signs = np.sign((a * b).sum(axis=0))
    return np.allclose(a, b * signs, atol=atol)


# --- preprocessing -------------------------------------------------------------------------------

def test_l2_normalize_by_hand():
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0], [-1.0, 0.0]]))
    assert np.allclose(out, [[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]])


def test_surf_zscore_by_hand():
    counts = np.array([[1, 3], [2, 2], [3, 1]])
    # rows / sums: [.25 .75], [.5 .5], [.75 .25]; column means .5 .5; population std sqrt(1/24)
    expected = np.array([[-0.25, 0.25], [0.0, 0.0], [0.25, -0.25]]) / np.sqrt(1 / 24)
    assert np.allclose(surf_zscore(counts), expected)
    assert np.allclose(surf_zscore(np.array([[1, 1], [2, 2]])), 0.0)  # constant columns become 0, not NaN


def test_surf_zscore_refuses_rows_without_counts():
    with pytest.raises(TransferkitError, match="row 1"):
        surf_zscore(np.array([[1, 2], [0, 0]]))


# --- JDA / BDA maths -----------------------------------------------------------------------------

def test_mmd_factor_matches_the_papers_matrices():
    ys, pseudo = np.array([0, 0, 1]), np.array([1, 0])
    ns, nt, n = 3, 2, 5
    src = np.arange(n) < ns
    m0 = np.where(np.outer(src, src), 1 / ns**2, np.where(np.outer(~src, ~src), 1 / nt**2, -1 / (ns * nt)))
    e = mmd_factor(ys, nt)  # no target labels yet: the marginal term alone, times C = 2
    assert np.allclose(e @ e.T, 2 * m0)
    mc = np.zeros((n, n))
    for c, ns_c, nt_c in ((0, 2, 1), (1, 1, 1)):  # Long et al. 2013, eq. 4: 1/ns_c^2, 1/nt_c^2, -1/(ns_c nt_c)
        s = np.r_[ys == c, [False] * nt]
        t = np.r_[[False] * ns, pseudo == c]
        mc += np.where(np.outer(s, s), 1 / ns_c**2, 0) + np.where(np.outer(t, t), 1 / nt_c**2, 0)
        mc -= np.where(np.outer(s, t) | np.outer(t, s), 1 / (ns_c * nt_c), 0)
    e = mmd_factor(ys, nt, pseudo, mu=0.25)
    assert np.allclose(e @ e.T, 0.75 * 2 * m0 + 0.25 * mc)
    w = mmd_factor(ys, nt, pseudo, mu=1.0, weighted=True)  # class 0: Ps 2/3, Pt 1/2 -> alpha 3/4
    assert np.isclose(w[3 + 1, 1], -0.75) and np.isclose(w[0, 1], 0.5)


def marginal_by_hand(x, ns, lam, k):
    """TCA-style primal solution as the authors' Python code solves it (scipy.linalg.eig, dense M0)."""
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    n = len(x)
    e0 = np.r_[np.full(ns, 1 / ns), np.full(n - ns, -1 / (n - ns))][:, None]
    m = e0 @ e0.T
    m /= np.linalg.norm(m)
    h = np.eye(n) - np.ones((n, n)) / n
    w, v = scipy.linalg.eig(xn.T @ m @ xn + lam * np.eye(x.shape[1]), xn.T @ h @ xn)
    v = np.real(v[:, np.argsort(np.real(w))[:k]])
    z = xn @ (v / np.linalg.norm(v, axis=0))
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def test_jda_without_pseudo_label_iterations_is_the_marginal_solution():
    x, y, sd, _ = shifted()
    z = JDA(n_components=3, lam=0.1, n_iter=1).fit_transform(x, y, sample_domain=sd)
    assert same_up_to_sign(z, marginal_by_hand(x, 24, 0.1, 3))
    z_bda = BDA(n_components=3, lam=0.1, n_iter=4, mu=0.0).fit_transform(x, y, sample_domain=sd)
    assert same_up_to_sign(z_bda, z)  # mu = 0 switches the conditional term off at every iteration


def test_jda_is_bda_with_equal_balance_and_pseudo_labels_change_it():
    x, y, sd, _ = shifted()
    z_jda = JDA(n_components=3, n_iter=3).fit_transform(x, y, sample_domain=sd)
    assert np.allclose(z_jda, BDA(n_components=3, n_iter=3, mu=0.5).fit_transform(x, y, sample_domain=sd))
    assert not same_up_to_sign(z_jda, JDA(n_components=3, n_iter=1).fit_transform(x, y, sample_domain=sd), atol=1e-3)


def test_linear_kernel_reduction_solves_the_papers_n_by_n_problem():
    x, y, sd, _ = shifted(n=5, d=4, classes=2)  # n = 10 > d: K is singular
    xn = l2_normalize(x)
    e = mmd_factor(y[:5], 5)
    f, u = kernel_basis(xn, "linear")
    c, _ = solve_projection(f, e, lam=1.0, k=3)
    z = f @ c
    k = xn @ xn.T
    m = e @ e.T / np.linalg.norm(e @ e.T)
    h = np.eye(10) - 1 / 10
    w, a = scipy.linalg.eig(k @ m @ k + np.eye(10), k @ h @ k)  # the authors' form: A = eigenvectors, Z = K A
    a = np.real(a[:, np.argsort(np.real(w))[:3]])
    assert same_up_to_sign(z, k @ (a / np.linalg.norm(a, axis=0)))
    z_est = JDA(3, lam=1.0, kernel="linear", n_iter=1).fit_transform(x, y, sample_domain=sd)
    assert same_up_to_sign(z_est, l2_normalize(k @ a))  # the estimator: the same, rows normalised


def test_transform_of_the_training_rows_is_their_fitted_embedding():
    x, y, sd, _ = shifted()
    for kernel in ("primal", "linear", "rbf"):
        est = JDA(n_components=3, kernel=kernel, n_iter=2)
        assert np.allclose(est.fit_transform(x, y, sample_domain=sd), est.transform(x), atol=1e-8), kernel


def test_predict_of_the_target_rows_is_the_last_pseudo_labelling():
    x, y, sd, yt = shifted()
    est = BDA(n_components=3, n_iter=3, mu=0.7, weighted=True).fit(x, y, sample_domain=sd)
    assert np.array_equal(est.predict(x[sd < 0]), est.pseudo_labels_)
    assert est.score(x[sd < 0], yt) == np.mean(est.pseudo_labels_ == yt)


# --- scikit-learn compatibility ------------------------------------------------------------------

@pytest.mark.parametrize("routing", [False, True])
def test_jda_in_a_pipeline(routing):
    x, y, sd, yt = shifted()
    expected = JDA(n_components=3, n_iter=2).fit(StandardScaler().fit_transform(x), y, sample_domain=sd)
    with sklearn.config_context(enable_metadata_routing=routing):
        pipe = make_pipeline(StandardScaler(), JDA(n_components=3, n_iter=2))
        params = {"sample_domain": sd} if routing else {"jda__sample_domain": sd}
        pred = pipe.fit(x, y, **params).predict(x[sd < 0])
    assert np.array_equal(pred, expected.predict(StandardScaler().fit(x).transform(x[sd < 0])))


def test_bda_in_grid_search_scores_as_computed_by_hand():
    x, y, sd, _ = shifted()
    cv = KFold(2, shuffle=True, random_state=0)
    with sklearn.config_context(enable_metadata_routing=False):
        grid = GridSearchCV(BDA(n_components=3, n_iter=2), {"mu": [0.0, 1.0]}, cv=cv).fit(x, y, sample_domain=sd)
    for i, mu in enumerate([0.0, 1.0]):
        scores = []
        for train, test in cv.split(x):
            est = BDA(n_components=3, n_iter=2, mu=mu).fit(x[train], y[train], sample_domain=sd[train])
            known = y[test] != -1  # held-out source rows: the only labels there are
            scores.append(np.mean(est.predict(x[test][known]) == y[test][known]))
        assert np.isclose(grid.cv_results_["mean_test_score"][i], np.mean(scores))
    assert grid.best_estimator_.mu == grid.best_params_["mu"]


def test_jda_in_skadas_da_pipeline():
    skada = pytest.importorskip("skada")
    x, y, sd, yt = shifted()
    pipe = skada.make_da_pipeline(StandardScaler(), JDA(n_components=3, n_iter=2), KNeighborsClassifier(1))
    pred = pipe.fit(x, y, sample_domain=sd).predict(x[sd < 0], sample_domain=sd[sd < 0])
    direct = JDA(n_components=3, n_iter=2).fit(StandardScaler().fit_transform(x), y, sample_domain=sd)
    assert np.array_equal(pred, direct.predict(StandardScaler().fit(x).transform(x[sd < 0])))


SMALL = {"tca": {"n_components": 3}, "sa": {"n_components": 3}, "jda": {"n_components": 3},
         "bda": {"n_components": 3}}


@pytest.mark.parametrize("name", SHALLOW.names())
def test_every_method_adapts_an_easy_shift(name):
    pytest.importorskip("skada")
    x, y, sd, yt = shifted(n=30)
    est = SHALLOW.build(name, **SMALL.get(name, {}))
    pred = est.fit(x, y, sample_domain=sd).predict(x[sd < 0], sample_domain=sd[sd < 0])
    assert pred.shape == yt.shape and np.mean(pred == yt) >= 0.9, (name, np.mean(pred == yt))


# --- errors --------------------------------------------------------------------------------------

def test_bad_inputs_fail_with_one_sentence():
    x, y, sd, _ = shifted()
    bad = x.copy()
    bad[3, 2] = np.nan
    cases = [
        (lambda: JDA(3).fit(bad, y, sample_domain=sd), "JDA: X contains NaN"),
        (lambda: JDA(3).fit(x, y[:-1], sample_domain=sd), "JDA: X has 48 rows but y has shape (47,)"),
        (lambda: JDA(3).fit(x, np.where(sd > 0, 0, -1) * 0, sample_domain=None), "no target rows"),
        (lambda: JDA(3, n_iter=1).fit(x, y, sample_domain=sd).transform(x[:, :5]), "X has 5 features but the estimator"),
        (lambda: JDA(7).fit(x, y, sample_domain=sd), "n_components=7 exceeds the 6 dimensions"),
        (lambda: SHALLOW.build("jdaa"), "Unknown shallow method 'jdaa'. Did you mean 'jda'?"),
        (lambda: SHALLOW.build("jda", lamda=1), "has no argument 'lamda'"),
        (lambda: SHALLOW.build("jda", lam=0), "'lam' must be a number > 0; got 0."),
        (lambda: SHALLOW.build("bda", mu=1.5), "'mu' must be a number in [0, 1]; got 1.5."),
        (lambda: SHALLOW.build("jda", kernel="poly"), "'kernel' must be one of primal, linear, rbf"),
    ]
    for call, fragment in cases:
        with pytest.raises(TransferkitError) as err:
            call()
        msg = str(err.value)
        assert fragment in msg and msg.count(". ") <= 1 and msg.endswith("."), msg


def test_a_skada_method_without_skada_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "skada", None)  # import skada -> ImportError
    with pytest.raises(TransferkitError, match=r"comes from skada, which is not installed; install it with"):
        SHALLOW.build("coral")
