"""`transferkit multitask`: a run directory and the delta-m table from a config; bad input exits 2."""

import os
import subprocess
import sys

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
