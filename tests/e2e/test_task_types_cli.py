"""The CLI with each task type: train / eval / predict for regression and multi-label runs, and bad
targets refused with one sentence naming the file and the fix (exit code 2), before any training."""

import csv
import json
import re
import sys

import numpy as np
import pytest
import yaml

from transferkit.cli import main


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """``transferkit ARGS`` in this process (the console entry point, so exit codes are the CLI's own)."""
    monkeypatch.setattr(sys, "argv", ["transferkit", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def _write(path, y, n=None, seed=0):
    n = len(y) if n is None else n
    x = np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)
    np.savez(path, x=x, y=y(x) if callable(y) else y)
    return path


def _config(tmp_path, data: dict, task: str, **train) -> str:
    cfg = {"data": {"val_fraction": 0.2, "test_fraction": 0.2} | data,
           "model": {"backbone": "mlp", "backbone_args": {"in_features": 8, "hidden": [16]}, "task": task},
           "train": {"epochs": 6, "batch_size": 16, "lr": 0.02, "device": "cpu"} | train}
    path = tmp_path / f"{task}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_regression_train_eval_predict(tmp_path, monkeypatch, capsys):
    data = _write(tmp_path / "values.npz", lambda x: (x[:, 0] - 2 * x[:, 1]).astype(np.float32), n=80)
    code, _, err = run_cli(monkeypatch, capsys, "train", _config(tmp_path, {"dataset": str(data)}, "regression"),
                           "--out", tmp_path / "r")
    assert code == 0, err
    config = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert config["train"]["monitor"] == "val/mae" and config["train"]["mode"] == "min" and config["model"]["num_classes"] == 1
    code, out, err = run_cli(monkeypatch, capsys, "eval", tmp_path / "r")
    assert code == 0, err
    metrics = json.loads(out)
    assert {"mae", "mse", "r2", "loss"} <= set(metrics) and metrics["loss"] == pytest.approx(metrics["mse"])
    code, _, err = run_cli(monkeypatch, capsys, "predict", tmp_path / "r", data, "--out", tmp_path / "pred.csv")
    assert code == 0, err
    rows = list(csv.DictReader(open(tmp_path / "pred.csv")))
    assert list(rows[0]) == ["input", "prediction"] and len(rows) == 80
    values = np.array([float(r["prediction"]) for r in rows])
    assert np.corrcoef(values, np.load(data)["y"])[0, 1] > 0.8  # it predicts the values, not a class


def test_multilabel_train_eval_predict(tmp_path, monkeypatch, capsys):
    data = _write(tmp_path / "tags.npz", lambda x: (x[:, :4] > 0).astype(np.float32), n=120)
    code, _, err = run_cli(monkeypatch, capsys, "train", _config(tmp_path, {"dataset": str(data)}, "multilabel", epochs=10),
                           "--out", tmp_path / "m")
    assert code == 0, err
    code, out, err = run_cli(monkeypatch, capsys, "eval", tmp_path / "m", "--data", data)
    assert code == 0, err
    assert json.loads(out)["mAP"] > 0.8 and "micro_f1" in json.loads(out)
    code, _, err = run_cli(monkeypatch, capsys, "predict", tmp_path / "m", data, "--out", tmp_path / "pred.csv")
    assert code == 0, err
    rows = list(csv.DictReader(open(tmp_path / "pred.csv")))
    assert list(rows[0]) == ["input", "prediction", "class"]
    truth = np.load(data)["y"]
    hits = [set(r["prediction"].split(";")) - {""} == {str(c) for c in np.flatnonzero(t)} for r, t in zip(rows, truth)]
    assert np.mean(hits) > 0.5  # whole label sets right for most rows (4 labels: chance is 1/16)


BAD = {
    "float targets for a classifier": (
        "classification", lambda p: _write(p, np.linspace(0, 3, 40).astype(np.float32)), None,
        r"y\[1\] = 0\.07692\d* is not a class index 0\.\.C-1; convert the labels to whole numbers, "
        r"or set model\.task: regression"),
    "true/false targets for a regressor": (
        "regression", lambda p: _write(p, np.arange(40) % 3 == 0), None,
        r"regression targets are true/false values; store numbers, or set model\.task: classification"),
    "NaN targets": (
        "regression", lambda p: _write(p, np.where(np.arange(40) % 7 == 3, np.nan, 1.0).astype(np.float32)), None,
        r"y\[3\] = nan is not a finite number; remove or impute that example"),
    "a multi-hot row of the wrong width": (
        "multilabel", lambda p: _write(p, np.eye(4, dtype=np.float32)[np.arange(40) % 4]),
        lambda p: _write(p, np.eye(3, dtype=np.float32)[np.arange(12) % 3]),
        r"has multi-hot rows of width 3, but the model has 4 classes; give every row 4 entries \(0 or 1\)"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_targets_exit_2_with_one_sentence_naming_the_file_and_the_fix(case, tmp_path, monkeypatch, capsys):
    task, train, test, message = BAD[case]
    train_path = train(tmp_path / "train.npz")
    data = {"dataset": str(train_path)} | ({"test": str(test(tmp_path / "test.npz"))} if test else {})
    code, out, err = run_cli(monkeypatch, capsys, "train", _config(tmp_path, data, task), "--out", tmp_path / "run")
    bad_file = tmp_path / ("test.npz" if test else "train.npz")
    assert code == 2, (out, err)
    text = " ".join(err.split())
    assert text.startswith(f"Error: '{bad_file}'") and re.search(message, text), text
    assert text.endswith(".") and not re.search(r"\.\s", text[:-1]), text  # one sentence
    assert "Traceback" not in err and not (tmp_path / "run").exists()  # refused before the run directory


def test_continual_learns_a_regression_stream_from_the_cli(tmp_path, monkeypatch, capsys):
    """A permuted stream of real-valued targets: the matrix holds R², LwF distils the outputs with MSE,
    and strategies that need class labels, or a split_classes stream, are refused with exit code 2."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 8)).astype(np.float32)
    np.savez(tmp_path / "values.npz", x=x, y=(2 * x[:, 0] + x[:, 1]).astype(np.float32))
    cfg = {"stream": {"kind": "permuted", "dataset": str(tmp_path / "values.npz"), "tasks": 2},
           "model": {"task": "regression", "backbone": "mlp", "backbone_args": {"in_features": 8, "hidden": [16]}},
           "strategy": {"name": "lwf"}, "train": {"epochs": 3, "batch_size": 16, "lr": 0.01},
           "compare": {"strategies": ["naive", "er"]}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, out, err = run_cli(monkeypatch, capsys, "continual", path, "--out", tmp_path / "run")
    assert code == 0, err
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["metric"] == "r2" and len(res["matrices"]["domain_il"]) == 2
    assert res["matrices"]["domain_il"][0][0] > 0.5  # the first task is learned (R² of 2x0 + x1)
    assert "avg R²" in out and "FWT is n/a for R²" in out and "R² matrix" in (tmp_path / "run" / "report.html").read_text()
    for override, message in [("strategy.name=ewc", "ewc's Fisher is that of the class probabilities"),
                              ("stream.kind=split_classes", "stream.kind 'split_classes' groups class labels")]:
        code, out, err = run_cli(monkeypatch, capsys, "continual", path, "--out", tmp_path / "bad", "--set", override,
                                 "--set", "compare.strategies=[]")
        assert code == 2 and message in out + err and not (tmp_path / "bad").exists()
