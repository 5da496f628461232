"""Accuracy claims on real data (slow; part of `make test`, skipped by `make test-fast`)."""

import pytest

from transferkit import predict, train
from transferkit.demo import DemoSettings, run_demo

pytestmark = pytest.mark.slow


def _by_strategy(rows):
    return {r["strategy"]: r["accuracy_mean"] for r in rows}


def test_demo_at_10_shots_transfer_beats_scratch(tmp_path):
    """The demo's own setting (k=10, 3 seeds): the best transfer strategy beats from-scratch."""
    acc = _by_strategy(run_demo(tmp_path / "demo", settings=DemoSettings(shots=10, seeds=3)))
    best = max(v for k, v in acc.items() if k != "scratch")
    assert best >= acc["scratch"] + 1.0, acc
    assert acc["full"] >= 90.0, acc


def test_transfer_beats_scratch_by_10_points_at_3_shots(tmp_path):
    """With 3 labels per class the source knowledge matters most: >= 10 points over from-scratch."""
    acc = _by_strategy(run_demo(tmp_path / "demo", settings=DemoSettings(shots=3, seeds=3),
                                strategies=("scratch", "full", "two_stage")))
    assert max(acc["full"], acc["two_stage"]) >= acc["scratch"] + 10.0, acc


def test_minilm_features_classify_amazon_kitchen(shared_data, tmp_path):
    """Frozen MiniLM features + a linear head on Amazon 'kitchen' reviews: >= 75 % test accuracy."""
    cfg = {"data": {"dataset": "amazon_reviews:kitchen", "val_fraction": 0.1, "test_fraction": 0.2, "seed": 0,
                    "data_dir": str(shared_data)},
           "model": {"backbone": "hf_text", "backbone_args": {"max_length": 256}},
           "strategy": {"name": "feature_extraction"},
           "train": {"epochs": 60, "batch_size": 64, "lr": 3e-3, "seed": 0}}
    res = train(cfg, out=tmp_path / "kitchen", progress=False)
    assert res.metrics["test_examples"] == 400
    assert res.metrics["test/accuracy"] >= 0.75, res.metrics
    reviews = tmp_path / "new.txt"
    reviews.write_text("This kettle is fantastic, it boils fast and looks great on the counter.\n"
                       "Terrible blender: it leaked on day one and broke within a week. Returned it.\n")
    rows = predict(tmp_path / "kitchen", reviews)
    assert [r["class"] for r in rows] == ["positive", "negative"], rows
