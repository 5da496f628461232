"""Accuracy claims on real data (slow; part of `make test`, skipped by `make test-fast`)."""

import pytest

from transferkit import predict, train
from transferkit.demo import ADAPT, ADAPTED, DemoSettings, run_demo

pytestmark = pytest.mark.slow


def _by_strategy(rows):
    return {r["strategy"]: r["accuracy_mean"] for r in rows}


def test_demo_domain_adaptation_and_fine_tuning_beat_their_baselines(tmp_path):
    """The demo as `make demo` runs it (real USPS digits, 3 seeds): the best unsupervised method beats
    source-only (same standardised images) by >= 5 points, and fine-tuning beats from-scratch by >= 10
    points at 1 and 3 labels per class."""
    rows = run_demo(tmp_path / "demo", settings=DemoSettings(seeds=3))
    acc = {(r["strategy"], r["shots"]): r["accuracy_mean"] for r in rows}
    best_da = max(acc[(m, 0)] for m in ADAPT)
    assert best_da >= acc[("source_only", 0)] + 5.0, acc
    for k in (1, 3):
        tuned = max(acc[("full", k)], acc[(ADAPTED, k)])
        assert tuned >= acc[("scratch", k)] + 10.0, (k, acc)
    assert acc[("full", 10)] >= 90.0, acc
    assert (tmp_path / "demo" / "data_efficiency.png").is_file()


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
