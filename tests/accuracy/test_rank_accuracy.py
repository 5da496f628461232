"""`rank` on real digits: a small CNN trained one epoch on MNIST is preferred, by LogME and by every
feature score, to a random initialisation of the same network, scored on 200 USPS images."""

import math

import pytest

import transferkit as tk

pytestmark = pytest.mark.slow


def test_logme_prefers_the_mnist_trained_cnn_to_random_weights_on_usps(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "cache"))
    tk.train({"data": {"dataset": "mnist_usps:mnist", "val_fraction": 0, "test_fraction": 0.1},
              "model": {"backbone": "small_cnn", "backbone_args": {"in_channels": 1}}, "strategy": {"name": "full"},
              "train": {"epochs": 1, "batch_size": 32, "lr": 0.003, "device": "cpu"}},
             out=tmp_path / "mnist", progress=False)
    res = tk.rank("mnist_usps:usps", [str(tmp_path / "mnist")], shots=20, out=tmp_path / "rank", progress=False)
    trained, reference = res.rows
    assert (trained["candidate"], reference["candidate"]) == (str(tmp_path / "mnist"), "random:small_cnn")
    assert trained["rows"] == 200 and res.warning is None
    assert trained["logme"] > reference["logme"] + 0.05
    for name in ("hscore", "transrate", "gbc"):
        assert trained[name] > reference[name], name
    assert not math.isnan(trained["leep"]) and math.isnan(reference["leep"])  # the run has a head of its own
    assert 0 < trained["mmd"] < 2 and 0 <= trained["pad"] <= 2  # MNIST vs USPS in the trained features
