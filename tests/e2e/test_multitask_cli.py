"""`transferkit multitask`: a run directory and the delta-m table from a config; bad input exits 2."""

import json
import os
import subprocess
import sys

import pytest
import yaml


def cli(*args):
    env = os.environ | {"COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "transferkit.cli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=600)


def test_multitask_cli_writes_the_run_and_rejects_bad_input(tmp_path, shared_data):
    cfg = {"name": "tiny", "data": {"kind": "domains", "per_task": 80, "tasks": [
               "office_caltech10_surf:amazon", "office_caltech10_surf:webcam"]},
           "model": {"backbone": "mlp", "backbone_args": {"in_features": 800, "hidden": [16]}},
           "weighter": {"name": "imtl_g"}, "seeds": 1, "train": {"epochs": 2, "device": "cpu"}}
    path = tmp_path / "mtl.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    res = cli("multitask", path, "--out", out)
    assert res.returncode == 0, res.stderr
    assert "Δm" in res.stdout and "imtl_g" in res.stdout and (out / "report.html").is_file()
    again = cli("multitask", path, "--out", out)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    bad = cli("multitask", path, "--out", tmp_path / "bad", "--set", "weighter.nme=pcgrad")
    assert bad.returncode == 2 and "unknown config key 'weighter.nme'" in bad.stderr and not (tmp_path / "bad").exists()
    listed = cli("list", "weighters")
    assert listed.returncode == 0 and "cagrad" in listed.stdout


def scores(run) -> list[tuple]:
    """Each model's test metrics (not its time)."""
    return [(r["kind"], r["name"], r["test"]) for r in json.loads((run / "results.json").read_text())]


@pytest.mark.slow
def test_models_on_ray_score_as_in_series_and_resume_keeps_the_finished_ones(tmp_path, shared_data):
    """One Ray task per model gives the serial run's test metrics; a resume after one model's result was lost
    trains that one again and leaves the others' files untouched."""
    pytest.importorskip("ray")
    cfg = {"data": {"kind": "domains", "per_task": 60, "tasks": [
               "office_caltech10_surf:amazon", "office_caltech10_surf:webcam"]},
           "model": {"backbone": "mlp", "backbone_args": {"in_features": 800, "hidden": [16]}},
           "weighter": {"name": "uncertainty"}, "compare": ["equal"], "seeds": 1,
           "train": {"epochs": 2, "device": "cpu"}}
    path = tmp_path / "mtl.yaml"
    path.write_text(yaml.safe_dump(cfg))
    serial, on_ray = tmp_path / "serial", tmp_path / "ray"
    assert cli("multitask", path, "--out", serial).returncode == 0
    res = cli("multitask", path, "--out", on_ray, "--executor", "ray", "--workers", "2")
    assert res.returncode == 0, res.stderr
    assert scores(on_ray) == scores(serial) and len(scores(serial)) == 4  # 2 weighters, 2 single-task baselines
    (on_ray / "multi" / "equal" / "seed-0" / "result.json").unlink()
    kept = [on_ray / "multi" / "uncertainty" / "seed-0" / "result.json",
            on_ray / "single" / "amazon" / "seed-0" / "result.json"]
    stats = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in kept}
    res = cli("multitask", path, "--out", on_ray, "--resume", "--executor", "ray", "--workers", "2")
    assert res.returncode == 0, res.stderr
    assert {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in kept} == stats
    assert scores(on_ray) == scores(serial)
    again = cli("multitask", path, "--out", on_ray, "--resume", "--set", "seeds=2")
    assert again.returncode == 2 and "Cannot resume" in again.stderr and "different config" in again.stderr
