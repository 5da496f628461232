"""`transferkit train` with strategy auto: the reason printed, the chosen strategy written; errors exit 2."""

import os
import subprocess
import sys

import yaml

from tests.conftest import tiny_config


def cli(*args):
    env = os.environ | {"COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "transferkit.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600)


def test_train_auto_prints_the_reason_and_writes_the_chosen_strategy(tiny_npz, tmp_path):
    src = tmp_path / "src.yaml"
    src.write_text(yaml.safe_dump(tiny_config(tiny_npz, epochs=3)))
    assert cli("train", src, "--out", tmp_path / "src").returncode == 0
    cfg = tiny_config(tiny_npz, epochs=1)
    cfg["model"]["weights"] = str(tmp_path / "src" / "model.safetensors")
    cfg["data"] |= {"shots": 8, "val_fraction": 0.0}
    cfg["strategy"] = {"name": "auto", "args": {"budget": "low"}}
    path = tmp_path / "auto.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = cli("train", path, "--out", tmp_path / "auto")
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stdout.split())
    # the source run's data is the target's own: a close domain
    assert ("Strategy auto chose 'lora': 8 labels per class, a low parameter budget and a close domain (A-distance "
            "0.") in said and "), so LoRA (r=4)." in said, said
    saved = yaml.safe_load((tmp_path / "auto" / "config.yaml").read_text())["strategy"]
    assert saved["name"] == "lora" and saved["args"] == {"r": 4} and saved["reason"].endswith("so LoRA (r=4).")


def test_train_auto_with_a_bad_budget_exits_2_with_one_sentence(tiny_npz, tmp_path):
    cfg = tiny_config(tiny_npz)
    cfg["strategy"] = {"name": "auto", "args": {"budget": "tiny"}}
    path = tmp_path / "auto.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = cli("train", path, "--out", tmp_path / "auto")
    assert r.returncode == 2
    assert "strategy.args.budget must be one of normal, low; got 'tiny'." in " ".join((r.stdout + r.stderr).split())
    assert not (tmp_path / "auto").exists()
