"""runs.classic (what `transferkit adapt` calls) in-process on tiny arrays: rows and results.json,
the papers' preprocessing per domain, and one-sentence errors raised before any fitting."""

import json

import numpy as np
import pytest

from transferkit.adapt.shallow import l2_normalize, surf_zscore
from transferkit.errors import TransferkitError
from transferkit.runs.classic import adapt, load_features, parse_args, preprocess


def _pair(tmp_path, d_target=6):
    rng = np.random.default_rng(0)
    y = np.arange(20) % 2
    np.savez(tmp_path / "s.npz", x=3.0 * np.eye(2, 6)[y] + rng.random((20, 6)), y=y)
    np.savez(tmp_path / "t.npz", x=2.0 * np.eye(2, d_target)[y] + rng.random((20, d_target)) + 1.0, y=y)
    return str(tmp_path / "s.npz"), str(tmp_path / "t.npz")


def test_adapt_rows_and_results_file(tmp_path):
    src, tgt = _pair(tmp_path)
    rows = adapt("jda", src, tgt, preprocessing="none", args={"n_components": 2, "n_iter": 3}, out=tmp_path / "run")
    xs, ys, _ = load_features(src)
    xt, yt, _ = load_features(tgt)
    nn = np.mean(ys[np.linalg.norm(xt[:, None] - xs[None], axis=2).argmin(1)] == yt)  # 1-NN by hand
    assert (rows[0]["method"], rows[0]["classifier"], rows[0]["accuracy"]) == ("source only", "1-NN", nn)
    assert rows[1]["method"] == "jda" and 0 <= rows[1]["accuracy"] <= 1
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["rows"] == rows and saved["n_source"] == 20 and saved["preprocess"] == "none"


def test_preprocessing_is_per_domain():
    x = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert np.allclose(preprocess(x, "zscore"), surf_zscore(x))
    assert np.allclose(preprocess(x, "l2"), l2_normalize(x)) and preprocess(x, "none") is x


def test_parse_args_reads_yaml_values():
    assert parse_args(["n_components=100", "kernel=linear", "weighted=true", "lam=0.1"]) == {
        "n_components": 100, "kernel": "linear", "weighted": True, "lam": 0.1}


@pytest.mark.parametrize("call, fragment", [
    (lambda s, t, b: adapt("jda", s, b), "has 6 features but target"),
    (lambda s, t, b: adapt("jda", s, t, preprocessing="zscore2"), "Unknown preprocessing 'zscore2'"),
    (lambda s, t, b: adapt("jda", s, t, weights="w.safetensors"), "--weights needs --backbone"),
    (lambda s, t, b: adapt("tca", s, t, args={"n_comp": 3}), "has no argument 'n_comp'"),
    (lambda s, t, b: adapt("jda", s, t, args={"n_iter": 0}), "'n_iter' must be an integer >= 1; got 0."),
    (lambda s, t, b: adapt("jda", b.replace("b.npz", "cats.npz"), b.replace("b.npz", "emus.npz")),
     "name their classes differently"),
    (lambda s, t, b: parse_args(["n_components"]), "is not of the form key=value"),
])
def test_bad_inputs_fail_with_one_sentence(tmp_path, call, fragment):
    src, tgt = _pair(tmp_path)
    np.savez(tmp_path / "b.npz", x=np.ones((20, 8)), y=np.arange(20) % 2)
    np.savez(tmp_path / "cats.npz", x=np.ones((4, 2)), y=np.array(["cat", "dog"] * 2))
    np.savez(tmp_path / "emus.npz", x=np.ones((4, 2)), y=np.array(["cat", "emu"] * 2))
    with pytest.raises(TransferkitError) as err:
        call(src, tgt, str(tmp_path / "b.npz"))
    assert fragment in str(err.value), str(err.value)
