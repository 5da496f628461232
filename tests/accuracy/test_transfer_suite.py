"""The transfer suite on real data: a small CNN pretrained on the full MNIST, transferred to USPS with
5 and 10 labelled images per class, 3 seeds (slow; part of `make test`)."""

import io

import numpy as np
import pytest
import yaml
from rich.console import Console

from transferkit import train
from transferkit.compare import compare
from transferkit.config import load_config, parse_config
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
EXAMPLES = ROOT / "examples"
SMALL = ["model.backbone_args.width=16", "model.backbone_args.num_features=64", "train.seed=1"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """The two sources of examples/mnist_source.yaml (about a minute on 2 cores)."""
    root = tmp_path_factory.mktemp("runs")
    train(load_config(EXAMPLES / "mnist_source.yaml"), out=root / "mnist_source", progress=False)
    train(load_config(EXAMPLES / "mnist_source.yaml", SMALL), out=root / "mnist_source_small", progress=False)
    return root


@pytest.fixture(scope="module")
def suite(sources, tmp_path_factory):
    text = (EXAMPLES / "usps_suite.yaml").read_text().replace("runs/", f"{sources}/")
    out = tmp_path_factory.mktemp("suite") / "usps"
    rows = compare(parse_config(yaml.safe_load(text)), ["full", "lora", "adapters", "l2sp", "fusion",
                                                        "feature_extraction", "feature_extraction_small"],
                   shots=[5, 10], seeds=3, out=out, console=Console(file=io.StringIO()))
    return {(r["strategy"], r["shots"]): r for r in rows}, out


@pytest.mark.parametrize("k", [5, 10])
@pytest.mark.parametrize("name", ["lora", "adapters"])
def test_parameter_efficient_within_3_points_of_full_with_under_5_percent(suite, name, k):
    rows, _ = suite
    r, full = rows[(name, k)], rows[("full", k)]
    assert r["trainable_parameters"] < 0.05 * full["trainable_parameters"], r
    assert r["accuracy_mean"] >= full["accuracy_mean"] - 3.0, (r, full)


@pytest.mark.parametrize("k", [5, 10])
def test_l2sp_no_more_than_1_point_below_full(suite, k):
    rows, _ = suite
    assert rows[("l2sp", k)]["accuracy_mean"] >= rows[("full", k)]["accuracy_mean"] - 1.0, rows[("l2sp", k)]


@pytest.mark.parametrize("k", [5, 10])
def test_fusion_of_two_sources_at_least_as_good_as_the_worse_alone(suite, k):
    rows, _ = suite
    alone = [rows[(n, k)]["accuracy_mean"] for n in ("feature_extraction", "feature_extraction_small")]
    assert rows[("fusion", k)]["accuracy_mean"] >= min(alone), (rows[("fusion", k)], alone)


def test_report_shows_every_strategy_beside_full_and_scratch(suite):
    rows, out = suite
    html = (out / "report.html").read_text()
    for name in {n for n, _ in rows}:
        r = rows[(name, 10)]
        assert f"{r['accuracy_mean']:.1f} ± {r['accuracy_std']:.1f}" in html, name
    assert "vs full fine-tuning" in html and "vs scratch" in html
    assert "What transferred" in html and (out / "what_transferred.png").is_file()


def test_distilled_student_keeps_95_percent_of_the_teacher(sources, tmp_path):
    """A 32k-parameter student (20 % of the 160k teacher) distilled on USPS (30 % of the images labelled)."""
    def cfg(seed, model, strategy):
        return {"data": {"dataset": "mnist_usps:usps", "label_fraction": 0.3, "val_fraction": 0.0,
                         "test_fraction": "rest", "seed": seed},
                "model": model | {"num_classes": 10}, "strategy": strategy,
                "train": {"epochs": 40, "batch_size": 32, "lr": 1e-3, "seed": seed}}

    teacher_model = {"backbone": "small_cnn", "backbone_args": {"in_channels": 1},
                     "weights": str(sources / "mnist_source" / "model.safetensors")}
    student_model = {"backbone": "small_cnn", "backbone_args": {"in_channels": 1, "width": 16, "num_features": 32}}
    teacher_acc, student_acc = [], []
    for seed in range(3):
        t = train(cfg(seed, teacher_model, {"name": "full"}), out=tmp_path / f"teacher{seed}", progress=False)
        s = train(cfg(seed, student_model, {"name": "kd", "args": {"teacher": str(tmp_path / f"teacher{seed}")}}),
                  out=tmp_path / f"student{seed}", progress=False)
        assert s.metrics["total_parameters"] <= 0.25 * t.metrics["total_parameters"]
        teacher_acc.append(t.metrics["test/accuracy"])
        student_acc.append(s.metrics["test/accuracy"])
    assert np.mean(student_acc) >= 0.95 * np.mean(teacher_acc), (student_acc, teacher_acc)
