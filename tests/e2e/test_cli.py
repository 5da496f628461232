"""One end-to-end test per CLI command, each in a temporary directory, run as a user would."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.conftest import ROOT, tiny_config


def cli(*args, cwd=None):
    env = os.environ | {"COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "transferkit.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


@pytest.fixture
def config_file(tiny_npz, tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tiny_npz)))
    return path


def test_train_eval_predict(config_file, tiny_npz, tmp_path):
    out = tmp_path / "run"
    r = cli("train", config_file, "--out", out, "--set", "train.epochs=3")
    assert r.returncode == 0, r.stderr
    assert {"config.yaml", "metrics.jsonl", "model.safetensors", "summary.json", "report.html", "checkpoints"} <= set(
        os.listdir(out))
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["epochs"] == 3
    r = cli("eval", out)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["accuracy"] > 0.5
    r = cli("predict", out, tiny_npz, "--out", tmp_path / "pred.csv")
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "pred.csv").read_text().splitlines()
    assert lines[0] == "input,prediction,class,confidence" and len(lines) == 121


def test_usage_errors_exit_2_without_traceback():
    for args in (["predict"], ["list", "nope"], ["train"]):
        r = cli(*args)
        assert r.returncode == 2 and "Traceback" not in r.stderr and "Usage" in r.stderr, (args, r.stderr)


def test_list_commands():
    for family, expected in [("backbones", "resnet18"), ("strategies", "two_stage"), ("datasets", "mnist_usps")]:
        r = cli("list", family)
        assert r.returncode == 0 and expected in r.stdout


def test_demo_small(tmp_path):
    r = cli("demo", "--out", tmp_path / "demo", "--seeds", "1", "--shots", "5", "--adapt", "coral")
    assert r.returncode == 0, r.stderr
    assert "from scratch" in r.stdout and "source only" in r.stdout and "coral" in r.stdout
    html = (tmp_path / "demo" / "report.html").read_text()
    assert html.count("data:image/png;base64") == 1 and "Data efficiency" in html
    transferred = json.loads((tmp_path / "demo" / "few_shot" / "what_transferred.json").read_text())
    fe = transferred["feature extraction (cached)"]
    assert all(r["weight_change"] == 0.0 and abs(r["cka"] - 1) < 1e-6 for r in fe)  # frozen: nothing moved
    rows = json.loads((tmp_path / "demo" / "results.json").read_text())["rows"]
    assert [(r["strategy"], r["shots"]) for r in rows] == [
        ("coral", 0), ("source_only", 0), ("scratch", 5), ("feature_extraction", 5), ("full", 5), ("full_adapted", 5)]
    assert rows[0]["baseline"] == "source_only"


def _expect_error(result, *fragments):
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    for f in fragments:
        assert f in result.stderr, result.stderr


def test_bad_inputs_fail_with_one_sentence(config_file, tiny_npz, tmp_path):
    cfg = yaml.safe_load(config_file.read_text())

    def write(**changes):
        c = json.loads(json.dumps(cfg))
        for key, value in changes.items():
            section, name = key.split("__")
            c[section][name] = value
        p = tmp_path / f"c{len(os.listdir(tmp_path))}.yaml"
        p.write_text(yaml.safe_dump(c))
        return p

    _expect_error(cli("train", write(data__dataset=str(tmp_path / "nope.npz"))), "nope.npz' does not exist")
    _expect_error(cli("train", write(model__backbone="resnet19")), "Did you mean 'resnet18'")
    _expect_error(cli("train", write(strategy__name="two_stag")), "Did you mean 'two_stage'")
    _expect_error(cli("train", write(model__num_classes=2)), "label 2 but the head has 2 classes")
    _expect_error(cli("train", config_file, "--set", "train.epoch=3"), "unknown config key 'train.epoch'")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("data: [\n")
    _expect_error(cli("train", bad_yaml), "not valid YAML")


def test_image_folder_errors_and_weights_mismatch(config_file, tmp_path):
    root = tmp_path / "imgs"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(root / c / f"{i}.png")
    (root / "b" / "x.png").write_bytes(b"garbage")
    cfg = yaml.safe_load(config_file.read_text())
    cfg["data"] = {"dataset": str(root), "channels": 1, "val_fraction": 0.0}
    cfg["model"] = {"backbone": "small_cnn", "backbone_args": {"in_channels": 1}}
    p = tmp_path / "img.yaml"
    p.write_text(yaml.safe_dump(cfg))
    _expect_error(cli("train", p), "'b/x.png' is not a readable image")
    (root / "b" / "x.png").unlink()
    (root / "c").mkdir()
    _expect_error(cli("train", p), "class folder 'c' has no images")
    (root / "c").rmdir()
    from safetensors.torch import save_file
    from transferkit.backbones import create_backbone

    save_file(create_backbone("small_cnn", in_channels=3).state_dict(), tmp_path / "w3.safetensors")
    cfg["model"]["weights"] = str(tmp_path / "w3.safetensors")
    p.write_text(yaml.safe_dump(cfg))
    _expect_error(cli("train", p), "does not fit backbone 'small_cnn'", "in the file")


def test_existing_run_is_kept_without_overwrite(config_file, tmp_path):
    out = tmp_path / "run"
    assert cli("train", config_file, "--out", out, "--set", "train.epochs=1").returncode == 0
    before = (out / "model.safetensors").read_bytes()
    _expect_error(cli("train", config_file, "--out", out), "already exists; pass --overwrite")
    assert (out / "model.safetensors").read_bytes() == before


def test_nan_loss_exits_cleanly(config_file, tmp_path):
    out = tmp_path / "run"
    r = cli("train", config_file, "--out", out, "--set", "train.lr=1e30", "--set", "train.optimizer=sgd")
    _expect_error(r, "loss became NaN or infinite")
    r = cli("--debug", "train", config_file, "--out", tmp_path / "run2", "--set", "train.lr=1e30",
            "--set", "train.optimizer=sgd")
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_compare_writes_one_report(config_file, tmp_path):
    out = tmp_path / "cmp"
    r = cli("compare", config_file, "--strategies", "full,feature_extraction", "--shots", "3,all", "--seeds", "2",
            "--set", "train.epochs=2", "--out", out)
    assert r.returncode == 0, r.stderr
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {(x["strategy"], x["shots"]) for x in rows} == {(s, k) for s in ("scratch", "full", "feature_extraction")
                                                            for k in (3, "all")}
    assert all(x["seeds"] == 2 and isinstance(x["negative_transfer"], bool) for x in rows)
    assert (out / "results.csv").read_text().startswith("strategy,shots,accuracy_mean")
    assert (out / "report.html").read_text().count("data:image/png;base64") == 3  # bars, data efficiency, curves
    _expect_error(cli("compare", config_file, "--strategies", "ful", "--out", tmp_path / "c2"), "Did you mean 'full'")


def test_compare_takes_its_plan_from_the_config(tiny_npz, tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tiny_npz, epochs=1) | {"compare": {
        "strategies": ["full", "big"], "shots": [4], "seeds": 2,
        "variants": {"big": {"strategy": "full", "model": {"backbone_args": {"in_features": 8, "hidden": [64]}}}}}}))
    r = cli("compare", path, "--out", tmp_path / "cmp")
    assert r.returncode == 0, r.stderr
    rows = json.loads((tmp_path / "cmp" / "results.json").read_text())["rows"]
    assert [(x["strategy"], x["shots"], x["seeds"]) for x in rows] == [("scratch", 4, 2), ("full", 4, 2), ("big", 4, 2)]


def test_python_dash_m_transferkit_works_like_the_command(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "transferkit", *map(str, a)], capture_output=True,  # noqa: E731
                                    text=True, env=os.environ | {"COLUMNS": "80"}, timeout=300)
    r = run("list", "strategies")
    assert r.returncode == 0, r.stderr
    assert "two_stage" in r.stdout and max(map(len, r.stdout.splitlines())) <= 80
    r = run("train", tmp_path / "missing.yaml")
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_domain_adaptation_from_the_readme_example(tmp_path):
    """The README's domain-adaptation example, 1 epoch: train prints the domain distance and which score
    chose; compare at 0 labels adds source-only and no from-scratch row."""
    example = str(ROOT / "examples" / "adapt" / "mnist_to_usps.yaml")
    r = cli("train", example, "--out", tmp_path / "run", "--set", "train.epochs=1", "--set", "report.feature_map=pca")
    assert r.returncode == 0, r.stderr
    assert "Domain distance, before -> after: MMD" in r.stdout and "chosen by target/im" in r.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test_examples"] == 1800 and summary["selection"]["monitor"] == "target/im"
    r = cli("compare", example, "--strategies", "coral", "--shots", "0", "--seeds", "1", "--out", tmp_path / "cmp",
            "--set", "train.epochs=1")
    assert r.returncode == 0, r.stderr
    rows = json.loads((tmp_path / "cmp" / "results.json").read_text())["rows"]
    assert [r["strategy"] for r in rows] == ["coral", "source_only"]
    r = cli("train", example, "--out", tmp_path / "bad", "--set", "data.unlabelled=mnist_usps:uspss")
    _expect_error(r, "no domain 'uspss'")
    assert not (tmp_path / "bad").exists()


def test_train_guard_trains_the_baselines_and_reports_the_verdict(config_file, tmp_path):
    source = tmp_path / "src"
    assert cli("train", config_file, "--out", source, "--set", "train.epochs=2").returncode == 0
    out = tmp_path / "guarded"
    r = cli("train", config_file, "--out", out, "--guard", "--set", "train.epochs=1", "--set", "data.val_fraction=0",
            "--set", f"model.weights={source / 'model.safetensors'}", "--set", "model.source_head=true",
            "--set", "train.lr=1e-9")  # barely trained: as good as the source model, so not better than it
    assert r.returncode == 0, r.stderr
    guard = json.loads((out / "summary.json").read_text())["guard"]
    assert set(guard["baselines"]) == {"scratch", "source_only"} and guard["rows"] == 9  # 10 % of the 32 non-test rows per class
    assert "never used to pick an epoch" in " ".join(r.stdout.split()) and guard["warning"] and "Warning:" in r.stdout
    assert "not better than" in " ".join(r.stdout.split())
    assert "Negative-transfer guard" in (out / "report.html").read_text()
    assert (out / "guard" / "scratch" / "model.safetensors").is_file()
    _expect_error(cli("train", config_file, "--out", tmp_path / "s", "--guard", "--set", "strategy.name=scratch"),
                  "the guard's own baseline")
