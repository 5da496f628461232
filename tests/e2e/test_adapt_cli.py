"""`transferkit adapt`: classic domain adaptation of one pair from the command line, in a temporary
directory: the table, results.json, a backbone's features, and one-sentence errors with exit 2."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tests.e2e.test_cli import _expect_error, cli
from transferkit.backbones import create_backbone


def test_adapt_jda_on_the_embedded_digits(tmp_path):
    out = tmp_path / "jda"
    r = cli("adapt", "--method", "jda", "--source", "mnist_usps:usps", "--target", "mnist_usps:mnist",
            "--args", "n_iter=2", "--out", out)
    assert r.returncode == 0, r.stderr
    assert "source only" in r.stdout and "44.70" in r.stdout  # the JDA paper's NN baseline, USPS -> MNIST
    res = json.loads((out / "results.json").read_text())
    assert res["args"] == {"n_iter": 2} and res["preprocess"] == "l2" and res["n_features"] == 256
    accs = {row["method"]: row["accuracy"] for row in res["rows"]}
    assert accs["source only"] == 0.447
    assert accs["jda"] == pytest.approx(0.5835, abs=0.0015)  # one pseudo-label iteration (the paper's 10: 0.5965)
    r = cli("adapt", "--method", "jda", "--source", "mnist_usps:usps", "--target", "mnist_usps:mnist", "--out", out)
    _expect_error(r, "already exists; pass --overwrite")


def _images(path, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    y = np.arange(30) % 3
    x = (rng.random((30, 16, 16)) * 0.2 + shift).astype(np.float32)
    x[np.arange(30), 4 * y + 2, :] += 0.8  # a bright row per class
    np.savez(path, x=x, y=y)
    return path


def test_adapt_features_of_a_backbone(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "cnn.safetensors"
    save_file(create_backbone("small_cnn").state_dict(), str(weights))
    src, tgt = _images(tmp_path / "src.npz", 0), _images(tmp_path / "tgt.npz", 1, shift=0.1)
    out = tmp_path / "bda"
    r = cli("adapt", "--method", "bda", "--source", src, "--target", tgt, "--backbone", "small_cnn",
            "--weights", weights, "--args", "n_components=8", "--args", "mu=0.3", "--out", out)
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["n_features"] == 128 and res["backbone"] == "small_cnn" and res["args"] == {"n_components": 8, "mu": 0.3}
    assert [row["method"] for row in res["rows"]] == ["source only", "bda"]


def test_adapt_unknown_method_exits_2(tmp_path):
    _expect_error(cli("adapt", "--method", "jdaa", "--source", "mnist_usps:usps", "--target", "mnist_usps:mnist"),
                  "Unknown shallow method 'jdaa'. Did you mean 'jda'?")
