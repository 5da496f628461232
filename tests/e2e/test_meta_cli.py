"""`transferkit meta`: a run directory from a config; a bad key exits 2 naming it; refusing to overwrite; --resume."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def cli(*args) -> subprocess.CompletedProcess:
    env = os.environ | {"COLUMNS": "200", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "transferkit", "meta", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture
def meta_config(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    protos = rng.random((9, 16, 16)) > 0.5
    x = np.concatenate([np.where(rng.random((6, 16, 16)) < 0.1, ~p, p) for p in protos]).astype(np.uint8) * 255
    np.savez(tmp_path / "tiny.npz", x=x, y=np.repeat(np.arange(9), 6))
    cfg = {"name": "tiny", "data": {"dataset": str(tmp_path / "tiny.npz"), "split": [3, 3, 3], "n_way": 3,
                                    "k_shot": 1, "q_queries": 2},
           "model": {"backbone_args": {"width": 4}}, "method": {"name": "protonet"},
           "train": {"iterations": 2, "eval_every": 1, "val_episodes": 2, "test_episodes": 4, "device": "cpu"}}
    path = tmp_path / "meta.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_meta_writes_a_run_refuses_to_overwrite_and_resumes_a_finished_run(meta_config, tmp_path):
    out = tmp_path / "run"
    res = cli(meta_config, "--out", out, "--set", "method.name=fomaml")
    assert res.returncode == 0, res.stderr
    assert "fomaml 3-way 1-shot: test accuracy" in res.stdout and "iteration 2:" in res.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["method"] == "fomaml" and results["test"]["episodes"] == 4
    again = cli(meta_config, "--out", out)
    assert again.returncode == 2 and "already exists; pass --overwrite" in again.stderr
    resumed = cli(meta_config, "--out", out, "--resume", "--set", "method.name=fomaml")
    assert resumed.returncode == 0 and json.loads((out / "results.json").read_text()) == results


def test_a_bad_key_exits_2_with_one_sentence_naming_it(meta_config, tmp_path):
    res = cli(meta_config, "--out", tmp_path / "bad", "--set", "method.inner_lr=-1")
    assert res.returncode == 2
    assert "config key 'method.inner_lr'" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "bad").exists()


def test_predict_adapts_a_meta_run_to_a_support_folder_and_exits_2_without_one(meta_config, tmp_path):
    from PIL import Image

    out = tmp_path / "run"
    assert cli(meta_config, "--out", out).returncode == 0
    x = np.load(tmp_path / "tiny.npz")["x"]
    for name, rows in {"support/a": [0], "support/b": [6], "support/c": [12], "queries": [1, 7, 13]}.items():
        (tmp_path / name).mkdir(parents=True)
        for i in rows:
            Image.fromarray(x[i]).save(tmp_path / name / f"{i}.png")
    env = os.environ | {"COLUMNS": "200", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    run = lambda *a: subprocess.run([sys.executable, "-m", "transferkit", "predict", *map(str, a)], env=env,
                                    capture_output=True, text=True, timeout=600)
    res = run(out, tmp_path / "queries", "--support", tmp_path / "support", "--out", tmp_path / "pred.csv")
    assert res.returncode == 0, res.stderr
    lines = (tmp_path / "pred.csv").read_text().splitlines()
    assert lines[0] == "input,prediction,class,confidence" and len(lines) == 4
    assert all(line.split(",")[2] in "abc" for line in lines[1:])
    bad = run(out, tmp_path / "queries")
    assert bad.returncode == 2 and "pass --support" in bad.stderr and "Traceback" not in bad.stderr
