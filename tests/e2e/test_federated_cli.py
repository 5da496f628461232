"""`transferkit federated` end to end on real USPS: a small CNN pretrained on MNIST, 5 clients with
Dirichlet(0.5) label skew, head-only training through Flower's simulation engine. Checks the files,
that the server only ever received the trainable tensors (count, names, shapes, bytes), and the accuracy
claim: the global model within 3 points of centralised fine-tuning and above the mean local-only model."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from safetensors.numpy import load_file

from transferkit.federated.privacy import gaussian_epsilon

pytest.importorskip("flwr")
pytestmark = pytest.mark.slow


def cli(*args, cwd):
    env = os.environ | {"COLUMNS": "200", "FLWR_TELEMETRY_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "transferkit.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


@pytest.mark.timeout(600)
def test_federated_head_only_on_usps(shared_data, tmp_path):
    source = {"data": {"dataset": "mnist_usps:mnist", "val_fraction": 0.0, "test_fraction": 0.0},
              "model": {"backbone": "small_cnn", "backbone_args": {"in_channels": 1}},
              "strategy": {"name": "scratch"}, "train": {"epochs": 4, "batch_size": 64, "lr": 0.002, "device": "cpu"}}
    (tmp_path / "source.yaml").write_text(yaml.safe_dump(source))
    r = cli("train", "source.yaml", "--out", "source", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    fed = {"name": "fed", "data": {"dataset": "mnist_usps:usps", "test_fraction": 0.3, "val_fraction": 0.0},
           "model": {"backbone": "small_cnn", "backbone_args": {"in_channels": 1}, "weights": "source/model.safetensors"},
           "strategy": {"name": "feature_extraction"},
           "train": {"batch_size": 32, "lr": 0.01, "seed": 1, "device": "cpu"},
           "federated": {"clients": 5, "alpha": 0.5, "rounds": 6, "local_epochs": 2}}
    (tmp_path / "fed.yaml").write_text(yaml.safe_dump(fed))
    r = cli("federated", "fed.yaml", "--out", "fed", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "fed"
    assert {"config.yaml", "metrics.jsonl", "trainable.safetensors", "model.safetensors", "summary.json", "report.md",
            "accuracy.png"} <= set(os.listdir(out))
    s = json.loads((out / "summary.json").read_text())
    rounds = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == list(range(1, 7))

    # only the trainable tensors reached the server: per round and client, what the server received
    trainable = load_file(out / "trainable.safetensors")
    assert sorted(trainable) == sorted(s["trainable_tensors"]) == ["heads.main.1.bias", "heads.main.1.weight"]
    shapes = {n: list(a.shape) for n, a in trainable.items()}
    exchanged = sum(a.nbytes for a in trainable.values())
    for rec in rounds:
        assert sorted(c["client"] for c in rec["clients"]) == list(range(5))
        for c in rec["clients"]:
            assert c["shapes"] == shapes and c["arrays_sent"] == len(trainable)
            assert c["bytes_sent"] == c["bytes_reported"] == exchanged == s["exchanged_bytes"]
            assert 0.0 <= c["local_accuracy"] <= 1.0
    assert s["bytes_fraction"] == pytest.approx(exchanged / s["model_bytes"], abs=1e-6) and s["bytes_fraction"] <= 0.05
    assert sum(s["client_train_examples"]) + sum(s["client_test_examples"]) + s["test_examples"] == 1800

    # the accuracy claim, on real data
    assert s["test/accuracy"] >= s["centralised/accuracy"] - 0.03, s
    assert s["test/accuracy"] > s["local_only/mean_accuracy"], s

    r = cli("federated", "fed.yaml", "--out", "fed", cwd=tmp_path)
    assert r.returncode == 2 and "--overwrite" in r.stderr

    # Flower's DP wrapper (server-side clipping and noise) over clients that weigh the same
    r = cli("federated", "fed.yaml", "--out", "dp", "--set", "federated.rounds=2", "--set",
            "federated.dp.noise_multiplier=0.5", "--set", "federated.dp.clipping_norm=1.0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    dp = [json.loads(line) for line in (tmp_path / "dp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in dp] == [1, 2] and all(c["bytes_sent"] == exchanged for r in dp for c in r["clients"])
    spent = json.loads((tmp_path / "dp" / "summary.json").read_text())["dp"]
    assert spent["epsilon"] == pytest.approx(gaussian_epsilon(0.5, 2, 1e-5)) and spent["epsilon_is"] == "exact"
    assert spent["epsilon_replace_one"] == pytest.approx(gaussian_epsilon(0.25, 2, 1e-5))
    said = f"({spent['epsilon']:.2f}, 1e-05)-DP after 2 rounds"
    assert said in r.stdout and said in (tmp_path / "dp" / "report.md").read_text()
