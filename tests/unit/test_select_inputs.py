"""Transferability scores: bad input is refused with one sentence naming it, the registry and the
entry points, and the layer rule that the package imports only numpy, scipy and scikit-learn."""

import ast
import sys
from pathlib import Path

import numpy as np
import pytest

from transferkit.errors import TransferkitError
from transferkit.select import (SCORES, applicable, gbc, h_score, h_score_regularised, leep, logme, logme_fit, nce,
                                score, score_all, transrate)

RNG = np.random.default_rng(0)
F = RNG.normal(size=(12, 3))
Y = np.arange(12) % 3
P = RNG.dirichlet(np.ones(4), size=12)
FEATURE_SCORES = [logme, h_score, h_score_regularised, transrate, gbc]


def _nan(a):
    a = a.astype(float).copy()
    a.flat[3] = np.nan
    return a


@pytest.mark.parametrize("fn", FEATURE_SCORES)
@pytest.mark.parametrize("features, labels, message", [
    (F[:, 0], Y, r"'features' must be an \[N, D\] matrix"),
    (_nan(F), Y, r"'features' holds 1 NaN or infinite"),
    (F.astype(str), Y, r"'features' must be a numeric array"),
    (F, Y[:-1], r"'labels' must be a vector of 12"),
    (F, Y + 0.5, r"'labels' must be integer class indices"),
    (F, Y - 1, r"'labels' must be class indices >= 0"),
    (F, Y * 2, r"every class index 0..C-1, but 1 never occurs"),
    (F, np.zeros(12, dtype=int), r"at least 2 classes"),
    (F, np.where(Y == 0, np.inf, Y), r"'labels' holds 4 NaN or infinite"),
])
def test_feature_scores_refuse_bad_input(fn, features, labels, message):
    with pytest.raises(TransferkitError, match=message):
        fn(features, labels)


def test_labels_as_integral_floats_or_a_column_are_accepted():
    assert h_score(F, Y.astype(float)[:, None]) == h_score(F, Y)


@pytest.mark.parametrize("probs, labels, message", [
    (P[:, :1] * 2, Y, r"LEEP: each row of 'probs' must sum to 1"),
    (np.log(P), Y, r"LEEP: 'probs' must be probabilities >= 0"),
    (P[:-1], Y, r"LEEP: 'probs' must have one row per target label \(12\)"),
    (_nan(P), Y, r"LEEP: 'probs' holds 1 NaN"),
    (P, Y * 2, r"LEEP: 'labels' must use every class index"),
])
def test_leep_refuses_bad_input(probs, labels, message):
    with pytest.raises(TransferkitError, match=message):
        leep(probs, labels)


@pytest.mark.parametrize("source, labels, message", [
    (Y - 1, Y, r"NCE: 'source_labels' must be class indices >= 0"),
    (Y[:-1], Y, r"NCE: 'source_labels' must be a vector of 12"),
    (Y + 0.1, Y, r"NCE: 'source_labels' must be integer"),
    (Y, np.ones(12, dtype=int), r"NCE: 'labels' must use every class index 0..C-1, but 0 never occurs"),
])
def test_nce_refuses_bad_input(source, labels, message):
    with pytest.raises(TransferkitError, match=message):
        nce(source, labels)


@pytest.mark.parametrize("call, message", [
    (lambda: logme(F, Y, algorithm="mackay"), r"LogME: 'algorithm' must be one of fixed_point, icml"),
    (lambda: logme(F, RNG.normal(size=(11, 2)), regression=True), r"LogME: regression 'labels' must be an \[N\]"),
    (lambda: logme(F, _nan(RNG.normal(size=(12, 2))), regression=True), r"LogME: 'labels' holds 1 NaN"),
    (lambda: logme_fit(F, Y).predict(F[:, :2]), r"LogME.predict: 'features' must have the 3 columns"),
    (lambda: transrate(F, Y, eps=0.0), r"TransRate: 'eps' must be a finite number > 0"),
    (lambda: gbc(F, Y, gaussian="full"), r"GBC: 'gaussian' must be one of spherical, diagonal"),
    (lambda: gbc(F, Y, pca_dim=0), r"GBC: 'pca_dim' must be an integer >= 1 or None"),
])
def test_options_are_checked(call, message):
    with pytest.raises(TransferkitError, match=message):
        call()


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="logmee", features=F), r"Unknown transferability score 'logmee'. Did you mean 'logme'\?"),
    (dict(name="leep", features=F), r"Score 'leep' needs 'probs'"),
    (dict(name="nce", features=F), r"Score 'nce' needs 'source_labels'"),
    (dict(name="hscore", features=F, task="regression"), r"Score 'hscore' scores classification tasks only"),
    (dict(name="logme", features=F, task="ranking"), r"'task' must be one of classification, regression"),
    (dict(name="transrate", features=F, alpha=1.0), r"Score 'transrate' has no argument 'alpha'; its arguments are: eps"),
])
def test_the_entry_point_names_what_is_wrong(kwargs, message):
    with pytest.raises(TransferkitError, match=message):
        score(labels=Y, **kwargs)


def test_score_all_needs_some_input():
    with pytest.raises(TransferkitError, match="score_all needs 'features', 'probs' or 'source_labels'"):
        score_all(labels=Y)


def test_every_registered_score_declares_its_input_and_tasks_and_computes():
    for name in SCORES.names():
        spec = SCORES.get(name)
        assert spec.needs in ("features", "probs", "source_labels") and SCORES.describe(name)
        assert set(spec.tasks) <= {"classification", "regression"}
        value = score(name, features=F, probs=P, labels=Y)
        assert np.isfinite(value)
        assert value == spec.fn(F if spec.needs == "features" else P if spec.needs == "probs" else P.argmax(1), Y)


def test_applicable_and_score_all_follow_the_inputs_and_the_task():
    assert applicable("regression") == ["logme"]
    assert applicable("classification", ("probs",)) == ["leep", "nce"]
    assert applicable("classification", ("source_labels",)) == ["nce"]
    assert set(score_all(probs=P, labels=Y)) == {"leep", "nce"}
    targets = F @ np.array([1.0, -2.0, 0.5])
    assert score_all(features=F, labels=targets, task="regression") == {"logme": logme(F, targets, regression=True)}
    assert score("logme", features=F, labels=Y, algorithm="icml") == logme(F, Y, algorithm="icml")


def test_the_package_imports_only_numpy_scipy_sklearn_and_the_bottom_layer():
    allowed = {"numpy", "scipy", "sklearn", "__future__", "transferkit"} | set(sys.stdlib_module_names)
    allowed_own = {"transferkit.errors", "transferkit.registry", "transferkit.select"}
    package = Path(sys.modules["transferkit.select"].__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"
                if name.startswith("transferkit"):
                    assert any(name == m or name.startswith(m + ".") for m in allowed_own), f"{path.name} imports {name}"
