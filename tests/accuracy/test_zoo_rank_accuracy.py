"""A small zoo on real digits (the USPS target of benchmarks/select/bench_zoo.py, cut down): LogME's
order of four candidates agrees with their fine-tuned accuracy on USPS, weighted tau >= 0.5 (the
issue's bar). Candidates: small_cnn trained on half of USPS (disjoint from the target rows), on the
2,000 JDA MNIST digits, on the same digits with shuffled labels, and a random initialisation."""

import numpy as np
import pytest
import torch
from scipy.stats import weightedtau
from threadpoolctl import threadpool_limits

import transferkit as tk
from transferkit.data import load_dataset

pytestmark = pytest.mark.slow

VIEW = {"preprocess": "standardize"}  # every candidate and the target: 1x16x16, each image standardised
TRAIN = {"lr": 1e-3, "seed": 0, "device": "cpu"}


def _save(path, x, y):
    np.savez(path, x=x, y=y.astype(np.int64))
    return str(path)


@pytest.fixture
def one_thread():
    """torch and BLAS on one thread: on a busy 2-core machine more threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


def test_logme_orders_a_small_zoo_as_fine_tuning_does_on_usps(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    usps, mnist = load_dataset("mnist_usps:usps"), load_dataset("mnist_usps:mnist")
    xu, yu = usps.x[:, 0].numpy(), np.asarray(usps.targets)
    half = np.concatenate([rng.permutation(np.flatnonzero(yu == c))[: (yu == c).sum() // 2] for c in range(10)])
    rest = np.setdiff1d(np.arange(len(yu)), half)
    shots = np.concatenate([rng.permutation(rest[yu[rest] == c])[:10] for c in range(10)])
    test = np.setdiff1d(rest, shots)
    xm, ym = mnist.x[:, 0].numpy(), np.asarray(mnist.targets)
    sources = {"usps_half": (_save(tmp_path / "uh.npz", xu[half], yu[half]), 10),
               "mnist": (_save(tmp_path / "m.npz", xm, ym), 3),
               "shuffled": (_save(tmp_path / "ms.npz", xm, rng.permutation(ym)), 3)}
    model = {"backbone": "small_cnn", "backbone_args": {"in_channels": 1}}
    for name, (data, epochs) in sources.items():
        tk.train({"data": {"dataset": data, "val_fraction": 0, "test_fraction": 0.1, **VIEW}, "model": model,
                  "train": {"epochs": epochs, "batch_size": 64, **TRAIN}}, out=tmp_path / name, progress=False)
    target = _save(tmp_path / "target.npz", xu[shots], yu[shots])
    target_test = _save(tmp_path / "target_test.npz", xu[test], yu[test])
    cands = [str(tmp_path / n) for n in sources] + ["random:small_cnn"]
    res = tk.rank(target, cands, progress=False, channels=1, **VIEW)
    logme = {r["candidate"]: r["logme"] for r in res.rows}
    acc = {}
    for i, c in enumerate(cands):
        weights = None if c.startswith("random:") else f"{c}/model.safetensors"
        run = tk.train({"data": {"dataset": target, "test": target_test, "val_fraction": 0, **VIEW},
                        "model": model | {"weights": weights},
                        "train": {"epochs": 20, "batch_size": 25, **TRAIN}}, out=tmp_path / "ft" / str(i),
                       progress=False)
        acc[c] = run.metrics["test/accuracy"]
    tau = weightedtau([logme[c] for c in cands], [acc[c] for c in cands]).statistic
    assert tau >= 0.5, (tau, logme, acc)
    assert acc[str(tmp_path / "shuffled")] < acc[str(tmp_path / "usps_half")]  # the protocol separates them
