"""Transferability scores: the published reference implementations' outputs (shared fixture), hand
computations on tiny inputs, and invariants."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from tests.conftest import ROOT
from transferkit.select import (SCORES, gbc, h_score, h_score_regularised, leep, logme, logme_fit, nce, score,
                                score_all, transrate)
from transferkit.select.gbc import bhattacharyya_distances
from transferkit.select.logme import log_evidence
from transferkit.select.transrate import coding_rate

FIXTURE = ROOT.parent / "shared" / "fixtures" / "transferability_reference.npz"
RTOL = 1e-10  # same algorithm as the reference: the fixture's README finds rtol 1e-10 safe


@pytest.fixture(scope="module")
def ref() -> dict:
    if not FIXTURE.is_file():
        pytest.skip(f"the reference fixture {FIXTURE} is absent (it belongs in shared/fixtures beside the repository)")
    with np.load(FIXTURE) as data:
        return {k: data[k] for k in data.files}


def _logme_case(ref: dict, case: str, tag: str):
    """(features, labels, regression, key prefix) of a LogME case of the fixture."""
    if case.startswith("c_"):
        dim = case[2:]
        return ref["case_c_features"], ref[f"case_c_targets_{dim}"], True, f"case_c_logme{tag}_{dim}"
    return ref[f"case_{case}_features"], ref[f"case_{case}_labels"], False, f"case_{case}_logme{tag}"


# --- the reference implementations' outputs ------------------------------------------------------

@pytest.mark.parametrize("algorithm, tag", [("fixed_point", ""), ("icml", "_icml")])
@pytest.mark.parametrize("case", ["a", "b", "e", "c_1d", "c_3d"])
def test_logme_reproduces_thuml_logme(ref, case, algorithm, tag):
    f, y, regression, key = _logme_case(ref, case, tag)
    fit = logme_fit(f, y, regression=regression, algorithm=algorithm)
    # thuml/LogME's fixed-point code drops -(D-k)/2 log(alpha) when rank k < D (issue #23): case e is
    # checked against its PR #24 patch; alpha, beta and m do not depend on the evidence, so they match.
    expected = ref["case_e_logme_pr24_patched"] if (case, algorithm) == ("e", "fixed_point") else ref[key]
    np.testing.assert_allclose(fit.score, expected, rtol=RTOL)
    np.testing.assert_allclose(fit.alphas, ref[f"{key}_alphas"], rtol=RTOL)
    # the ICML code sums log(alpha + beta sigma) over F^T F's ~1e-13 null eigenvalues, here exact zeros
    np.testing.assert_allclose(fit.betas, ref[f"{key}_betas"], rtol=1e-8 if case == "e" else RTOL)
    ms = ref[f"{key}_ms"]
    np.testing.assert_allclose(fit.weights, ms, rtol=1e-8, atol=1e-12 * np.abs(ms).max())
    pred = fit.predict(f)
    if regression:
        np.testing.assert_allclose(pred, ref[f"{key}_predict"], rtol=1e-8, atol=1e-10)
    else:
        np.testing.assert_array_equal(pred, ref[f"{key}_predict"])


def test_logme_wide_case_is_the_patched_value_not_the_buggy_one(ref):
    value = logme(ref["case_e_features"], ref["case_e_labels"])
    assert abs(value - ref["case_e_logme"]) > 1.0  # the unpatched reference: 4.405
    for other in ("case_e_logme_icml", "case_e_logme_tllib"):  # the algorithms that keep all D eigenvalues
        np.testing.assert_allclose(value, ref[other], rtol=5e-3)


@pytest.mark.parametrize("case", ["a", "b", "c_1d", "c_3d"])
def test_logme_agrees_with_tllib_across_algorithms(ref, case):
    f, y, regression, key = _logme_case(ref, case, "_tllib")
    np.testing.assert_allclose(logme(f, y, regression=regression), ref[key], rtol=1e-5)


def test_leep_and_nce_reproduce_the_references(ref):
    y = ref["case_d_target_labels"]
    for key in ("case_d_leep", "case_d_leep_tllib"):
        np.testing.assert_allclose(leep(ref["case_d_source_probs"], y), ref[key], rtol=RTOL)
    for key in ("case_d_nce", "case_d_nce_tllib"):
        np.testing.assert_allclose(nce(ref["case_d_source_argmax"], y), ref[key], rtol=RTOL)
    # through the entry point, NCE's hard labels are the arg-max of the probabilities
    np.testing.assert_allclose(score("nce", probs=ref["case_d_source_probs"], labels=y), ref["case_d_nce"], rtol=RTOL)


@pytest.mark.parametrize("case", ["a", "b", "e"])
@pytest.mark.parametrize("fn, key", [(h_score, "hscore"), (h_score_regularised, "hscore_regularized"),
                                     (transrate, "transrate")])
def test_feature_scores_reproduce_tllib(ref, case, fn, key):
    value = fn(ref[f"case_{case}_features"], ref[f"case_{case}_labels"])
    np.testing.assert_allclose(value, ref[f"case_{case}_{key}"], rtol=RTOL)


# --- hand computations ---------------------------------------------------------------------------

def test_leep_by_hand():
    probs = np.array([[0.5, 0.5], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    y = np.array([0, 0, 1, 1])
    # P(y, z) = [[1.5, 0.5], [0.5, 1.5]] / 4, so P(y | z=0) = (3/4, 1/4), P(y | z=1) = (1/4, 3/4);
    # the empirical predictor gives the true labels 1/2, 3/4, 3/4, 1/2
    assert leep(probs, y) == pytest.approx(0.5 * np.log(0.5 * 0.75), rel=1e-14)


def test_nce_by_hand_with_absent_source_classes():
    y = np.array([0, 1, 1, 1])
    # z = 3: half/half (entropy log 2, mass 1/2); z = 7: always class 1 (entropy 0)
    assert nce(np.array([3, 3, 7, 7]), y) == pytest.approx(-0.5 * np.log(2.0), rel=1e-14)
    assert nce(np.zeros(4, dtype=int), y) == pytest.approx(0.25 * np.log(0.25) + 0.75 * np.log(0.75), rel=1e-14)


def test_a_perfect_source_gives_nce_and_leep_zero():
    y = np.random.default_rng(0).integers(0, 4, 50)
    y[:4] = np.arange(4)
    z = (y + 2) % 4 * 10  # any one-to-one renaming of the classes
    assert nce(z, y) == 0.0
    assert leep(np.eye(40)[z], y) == 0.0


def test_leep_of_one_hot_outputs_is_nce():
    rng = np.random.default_rng(1)
    z, y = rng.integers(0, 6, 80), rng.integers(0, 3, 80)
    y[:3] = np.arange(3)
    assert leep(np.eye(6)[z], y) == pytest.approx(nce(z, y), rel=1e-12)


def test_h_score_and_transrate_by_hand():
    f, y = np.array([[0.0], [2.0], [4.0], [6.0]]), np.array([0, 0, 1, 1])
    assert h_score(f, y) == pytest.approx((16 / 3) / (20 / 3), rel=1e-14)  # var of [1, 1, 5, 5] / var of f
    f = np.array([[0.0], [1.0], [4.0], [6.0]])  # centred: -2.75, -1.75, 1.25, 3.25
    whole = 0.5 * np.log(1 + 22.75 / (4 * 1e-4))
    classes = 0.5 * np.log(1 + 10.625 / (2 * 1e-4)), 0.5 * np.log(1 + 12.125 / (2 * 1e-4))
    assert transrate(f, y) == pytest.approx(whole - np.mean(classes), rel=1e-13)


def test_coding_rate_through_either_gram_matrix():
    z = np.random.default_rng(2).normal(size=(5, 9))
    direct = 0.5 * np.linalg.slogdet(np.eye(9) + z.T @ z / (5 * 0.01))[1]
    assert coding_rate(z, 0.01) == pytest.approx(direct, rel=1e-12)


def test_gbc_by_hand():
    f, y = np.array([[0.0], [2.0], [4.0], [8.0]]), np.array([0, 0, 1, 1])
    # means 1 and 6, population variances 1 and 4: D_B = 25 / (8 * 2.5) + 1/2 log(2.5 / sqrt(1 * 4))
    bc = np.exp(-(25 / 20 + 0.5 * np.log(1.25)))
    for gaussian in ("spherical", "diagonal"):
        assert gbc(f, y, gaussian=gaussian, pca_dim=None) == pytest.approx(-2 * bc, rel=1e-14)


def test_bhattacharyya_distance_matches_the_determinant_formula():
    rng = np.random.default_rng(3)
    means, var = rng.normal(size=(3, 4)), rng.uniform(0.5, 2.0, size=(3, 4))
    dist = bhattacharyya_distances(means, var, 4)
    for i in range(3):
        for j in range(3):
            s1, s2 = np.diag(var[i]), np.diag(var[j])
            s, diff = (s1 + s2) / 2, means[i] - means[j]
            full = diff @ np.linalg.inv(s) @ diff / 8 + 0.5 * np.log(
                np.linalg.det(s) / np.sqrt(np.linalg.det(s1) * np.linalg.det(s2)))
            assert dist[i, j] == pytest.approx(full, rel=1e-12, abs=1e-14)


def test_spherical_gbc_equals_diagonal_when_each_class_has_one_variance():
    pattern = np.array([[1, 1, 1], [-1, -1, -1], [1, -1, 1], [-1, 1, -1]], dtype=float)  # variance 1 per dimension
    f = np.concatenate([pattern * 0.5, 2.0 * pattern + 1.0, 3.0 * pattern - 2.0])
    y = np.repeat(np.arange(3), 4)
    spherical = gbc(f, y, gaussian="spherical", pca_dim=None)
    assert spherical == pytest.approx(gbc(f, y, gaussian="diagonal", pca_dim=None), rel=1e-13)
    assert -6.0 < spherical < 0.0


def test_gbc_extremes_and_pca():
    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(3), 30)
    assert gbc(rng.normal(size=(90, 5)) + 100.0 * y[:, None], y) == pytest.approx(0.0, abs=1e-12)  # separated
    assert gbc(rng.normal(size=(90, 5)), y) < -0.9 * 6  # one cloud: close to -C (C - 1)
    f = rng.normal(size=(90, 8)) + y[:, None]
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    # all 8 principal axes keep the spherical score: it depends on distances and total variance only
    assert gbc(f, y) == pytest.approx(gbc(f @ q, y, pca_dim=None), rel=1e-10)


# --- LogME's evidence ----------------------------------------------------------------------------

@pytest.mark.parametrize("n, d", [(3, 1), (6, 15), (30, 4)])
def test_log_evidence_is_the_gaussian_marginal_likelihood(n, d):
    """With all D eigenvalues (also for N < D), the closed form equals log N(y; 0, I/beta + F F^T/alpha)."""
    rng = np.random.default_rng(n + d)
    f, y = rng.normal(size=(n, d)), rng.normal(size=n)
    alpha, beta = 0.7, 2.5
    m = np.linalg.solve(alpha / beta * np.eye(d) + f.T @ f, f.T @ y)  # the posterior mean
    sigma = np.linalg.svd(f, compute_uv=False) ** 2
    value = log_evidence(np.array([alpha]), np.array([beta]), np.array([m @ m]), np.array([((y - f @ m) ** 2).sum()]),
                         sigma, n, d)
    expected = multivariate_normal.logpdf(y, np.zeros(n), np.eye(n) / beta + f @ f.T / alpha) / n
    assert value[0] == pytest.approx(expected, rel=1e-12)


def test_logme_maximises_the_evidence_of_a_one_dimensional_regression():
    rng = np.random.default_rng(5)
    f = rng.normal(size=(40, 1))
    y = 1.5 * f[:, 0] + 0.3 * rng.normal(size=40)
    fit = logme_fit(f, y, regression=True)
    evidence = lambda a, b: multivariate_normal.logpdf(y, np.zeros(40), np.eye(40) / b + f @ f.T / a) / 40  # noqa: E731
    a, b = fit.alphas[0], fit.betas[0]
    assert fit.score == pytest.approx(evidence(a, b), abs=1e-8)  # its m is from the previous, converged step
    assert all(evidence(a * s, b * t) <= evidence(a, b) + 1e-12 for s in (0.95, 1.05) for t in (0.95, 1.05))
    assert b == pytest.approx(1 / 0.3 ** 2, rel=0.3)  # the noise precision
    assert fit.weights[0, 0] == pytest.approx(1.5, rel=0.05)


def test_logme_wide_features_are_finite_and_one_dimensional_targets_are_one_column():
    rng = np.random.default_rng(6)
    f, y = rng.normal(size=(12, 40)), np.tile(np.arange(3), 4)
    assert np.isfinite(logme(f, y)) and np.isfinite(logme(f, y, algorithm="icml"))
    t = rng.normal(size=12)
    assert logme(f, t, regression=True) == logme(f, t[:, None], regression=True)


# --- invariants ----------------------------------------------------------------------------------

def _easy_problem(seed: int = 7, n: int = 60, d: int = 6, classes: int = 3):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    return rng.normal(size=(n, d)) + 1.5 * rng.normal(size=(classes, d))[y], y, rng


@pytest.mark.parametrize("name", SCORES.names())
def test_renaming_the_target_classes_changes_no_score(name):
    f, y, rng = _easy_problem()
    probs = rng.dirichlet(np.ones(5), size=len(y))
    rename = np.array([2, 0, 1])
    kw = dict(features=f, probs=probs)
    assert score(name, labels=rename[y], **kw) == pytest.approx(score(name, labels=y, **kw), rel=1e-10, abs=1e-12)


def test_every_feature_score_ranks_informative_features_above_noise():
    f, y, rng = _easy_problem()
    good, noise = score_all(features=f, labels=y), score_all(features=rng.normal(size=f.shape), labels=y)
    assert set(good) == {"gbc", "hscore", "hscore_regularised", "logme", "transrate"}
    assert all(good[k] > noise[k] for k in good)


def test_h_score_is_invariant_to_invertible_linear_maps_and_degenerate_when_wide():
    f, y, rng = _easy_problem()
    assert h_score(f @ rng.normal(size=(6, 6)), y) == pytest.approx(h_score(f, y), rel=1e-9)
    wide = rng.normal(size=(10, 20))
    assert h_score(wide, np.arange(10) % 3) == pytest.approx(2.0, rel=1e-8)  # C - 1 whatever the features
    assert h_score_regularised(wide, np.arange(10) % 3) < 2.0


def test_leep_and_nce_are_at_most_zero():
    rng = np.random.default_rng(8)
    for _ in range(5):
        y = rng.permutation(np.arange(30) % 4)
        probs = rng.dirichlet(np.full(7, 0.3), size=30)
        assert leep(probs, y) <= 0.0 and nce(probs.argmax(1), y) <= 0.0


def test_constant_features_give_the_uninformative_values():
    y = np.arange(12) % 3
    for f in (np.zeros((12, 5)), np.ones((12, 5))):
        values = score_all(features=f, labels=y)
        assert values["hscore"] == 0.0 and values["hscore_regularised"] == 0.0 and values["transrate"] == 0.0
        assert values["gbc"] == -6.0  # -C (C - 1): every pair of classes overlaps entirely
        assert np.isfinite(values["logme"])
    fit = logme_fit(np.zeros((12, 5)), y)  # rank 0: the evidence of y ~ N(0, I / beta), beta = N / ||y||^2
    expected = [multivariate_normal.logpdf((y == c).astype(float), np.zeros(12), np.eye(12) / b) / 12
                for c, b in zip(range(3), fit.betas)]
    np.testing.assert_allclose(fit.evidences, expected, rtol=1e-12)
    np.testing.assert_allclose(fit.betas, 12 / (4 + 1e-5), rtol=1e-12)
    assert not fit.weights.any()
