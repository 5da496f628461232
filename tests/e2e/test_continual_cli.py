"""`transferkit continual`: a run directory from a config; bad input; a real kill and resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, **kw):
    env = os.environ | {"COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "transferkit.cli", "continual", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def finish(proc) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 50)
    x = (rng.normal(size=(200, 8)) + 3.0 * np.eye(4, 8)[y]).astype(np.float32)
    np.savez(tmp_path / "four.npz", x=x, y=y)
    cfg = {"stream": {"kind": "split_classes", "dataset": str(tmp_path / "four.npz"), "classes_per_task": 2},
           "model": {"backbone": "mlp", "backbone_args": {"in_features": 8, "hidden": [16]}},
           "strategy": {"name": "er", "args": {"size": 20}},
           "train": {"epochs": 2, "batch_size": 8, "lr": 0.05, "optimizer": "sgd"},
           "compare": {"strategies": ["naive", "lwf"]}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_continual_writes_a_run_directory_with_report(tiny_config, tmp_path):
    out = tmp_path / "run"
    r = finish(cli(tiny_config, "--out", out))
    assert r.returncode == 0, r.stderr
    assert {"config.yaml", "metrics.jsonl", "checkpoints", "results.json", "report.html", "comparison.csv",
            "compare"} <= set(os.listdir(out))
    res = json.loads((out / "results.json").read_text())
    assert len(res["matrices"]["class_il"]) == 2 and "forgetting" in res["summary"]["class_il"]
    assert "fwt" not in res["summary"]["class_il"] and "fwt" in res["summary"]["task_il"]
    class_rows = [line for line in r.stdout.splitlines() if "class_il" in line and not line.startswith("task ")]
    assert len(class_rows) == 3 and all("n/a" in line for line in class_rows)  # er, naive, lwf: FWT not comparable
    assert "FWT is n/a in class-IL" in r.stdout
    assert (out / "compare" / "lwf" / "results.json").is_file()
    html = (out / "report.html").read_text()
    assert "Strategy comparison" in html and "accuracy matrix" in html and html.count("<img") >= 6
    r = finish(cli(tiny_config, "--out", out))  # never overwrite without --overwrite
    assert r.returncode == 2 and "--overwrite" in r.stderr


@pytest.mark.parametrize("override,message", [("strategy.name=ewcc", "Did you mean 'ewc'"),
                                              ("stream.classes_per_task=3", "classes_per_task"),
                                              ("strategy.args.size=-1", "'size'"),
                                              ("stream.kind=spiral", "stream.kind")])
def test_continual_rejects_bad_input_in_one_sentence(tiny_config, tmp_path, override, message):
    r = finish(cli(tiny_config, "--out", tmp_path / "bad", "--set", override))
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_killed_split_mnist_er_run_resumes_to_the_same_accuracy_matrix(tmp_path):
    """Kill the process (SIGKILL) once task 3 of 5 is checkpointed, resume, compare with a run
    that was never interrupted (deterministic mode)."""
    config = ROOT / "examples" / "continual" / "split_mnist.yaml"
    no_compare = ["--set", "compare.strategies=[]"]
    whole = finish(cli(config, "--out", tmp_path / "whole", *no_compare))
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "killed"
    proc = cli(config, "--out", out, *no_compare)
    latest = out / "checkpoints" / "LATEST"
    deadline = time.time() + 600
    while time.time() < deadline and not (latest.is_file() and latest.read_text().strip() == "task-0002"):
        assert proc.poll() is None, "the run ended before task 3 was checkpointed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert latest.read_text().strip() == "task-0002" and not (out / "results.json").exists()
    r = finish(cli(config, "--out", out, "--resume", *no_compare))
    assert r.returncode == 0, r.stderr
    a = json.loads((tmp_path / "whole" / "results.json").read_text())
    b = json.loads((out / "results.json").read_text())
    assert b["matrices"] == a["matrices"]
    assert [r["task"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())] == [1, 2, 3, 4, 5]


def matrices(run: Path) -> dict:
    """Each strategy's accuracy matrices (what the run learned, not how long it took)."""
    files = [run / "results.json", *sorted((run / "compare").glob("*/results.json"))]
    return {json.loads(f.read_text())["strategy"]: json.loads(f.read_text())["matrices"] for f in files}


@pytest.mark.slow
def test_strategies_on_ray_learn_as_in_series_and_resume_keeps_the_finished_ones(tiny_config, tmp_path):
    """One Ray task per strategy gives the serial run's matrices; a resume on Ray after one strategy's results
    were lost learns that one again and leaves the others' files untouched."""
    pytest.importorskip("ray")
    serial, on_ray = tmp_path / "serial", tmp_path / "ray"
    assert finish(cli(tiny_config, "--out", serial)).returncode == 0
    r = finish(cli(tiny_config, "--out", on_ray, "--executor", "ray", "--workers", "2"))
    assert r.returncode == 0, r.stderr
    assert "lwf: learned the stream's 2 tasks" in r.stdout
    assert matrices(on_ray) == matrices(serial) and len(matrices(serial)) == 3
    (on_ray / "compare" / "lwf" / "results.json").unlink()
    kept = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in (on_ray / "results.json",
                                                                  on_ray / "compare" / "naive" / "results.json")}
    r = finish(cli(tiny_config, "--out", on_ray, "--resume", "--executor", "ray", "--workers", "2"))
    assert r.returncode == 0, r.stderr
    assert {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in kept} == kept
    assert matrices(on_ray) == matrices(serial)


def test_executor_ray_without_ray_is_refused_before_the_run_directory(tiny_config, tmp_path, monkeypatch):
    from transferkit.errors import TransferkitError
    from transferkit.runs.continual import run_continual
    from transferkit.runs.executors import INSTALL_RAY

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(TransferkitError, match=r"^--executor ray needs Ray; install it with"):
        run_continual(tiny_config, tmp_path / "run", executor="ray")
    assert not (tmp_path / "run").exists() and INSTALL_RAY.endswith("(or run without --executor ray).")
