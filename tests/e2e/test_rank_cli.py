"""`transferkit rank` from the command line, in a temporary directory: the table, rank.csv and
rank.html, the refusal of an existing --out, and one-sentence errors with exit 2."""

import csv

import numpy as np
import torch
from safetensors.torch import save_file

from tests.e2e.test_cli import _expect_error, cli
from transferkit.backbones import create_backbone


def _images(path):
    rng = np.random.default_rng(0)
    y = np.arange(30) % 3
    x = (rng.random((30, 16, 16)) * 0.2).astype(np.float32)
    x[np.arange(30), 4 * y + 2, :] += 0.8  # a bright row per class
    np.savez(path, x=x, y=y)
    return path


def test_rank_writes_the_table_csv_and_report(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "cache"))
    data = _images(tmp_path / "tgt.npz")
    torch.manual_seed(1)
    weights = tmp_path / "cnn.safetensors"
    save_file(create_backbone("small_cnn").state_dict(), str(weights))
    out = tmp_path / "rank"
    r = cli("rank", "--data", data, "--candidates", f"small_cnn={weights},random:mlp", "--metric", "hscore",
            "--shots", "5", "--out", out)
    assert r.returncode == 0, r.stderr
    assert "rank:" in r.stdout and "random:small_cnn" in r.stdout and "(reference)" in r.stdout
    rows = list(csv.DictReader((out / "rank.csv").open()))
    assert {row["candidate"]: row["kind"] for row in rows} == {f"small_cnn={weights}": "weights", "random:mlp": "random",
                                                               "random:small_cnn": "reference"}
    assert len(rows) == 3 and all(row["rows"] == "15" for row in rows)
    scores = [float(row["hscore"]) for row in rows]
    assert scores == sorted(scores, reverse=True) and [row["rank"] for row in rows] == ["1", "2", "3"]
    assert "<h2>Ranking</h2>" in (out / "rank.html").read_text() and (out / "inputs.json").is_file()
    r = cli("rank", "--data", data, "--candidates", "random:mlp", "--out", out)
    _expect_error(r, "already exists; pass --overwrite to replace it")
    assert (out / "rank.csv").is_file()  # untouched
    r = cli("rank", "--data", data, "--candidates", "random:mlp", "--out", out, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert len(list(csv.DictReader((out / "rank.csv").open()))) == 1


def test_rank_bad_candidate_exits_2(tmp_path):
    _expect_error(cli("rank", "--data", "mnist_usps:usps", "--candidates", "small_cnn=missing.safetensors",
                      "--out", tmp_path / "r"), "Candidate 'small_cnn=missing.safetensors': the weights "
                  "'missing.safetensors' do not exist; check the path.")
    assert not (tmp_path / "r").exists()
