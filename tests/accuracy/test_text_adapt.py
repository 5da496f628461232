"""Domain adaptation on text flags negative transfer: Amazon electronics -> dvd reviews on frozen MiniLM
features (the packaged all-MiniLM-L6-v2, 128 tokens), `compare` at 0 target labels with source-only,
Deep CORAL and DANN, 3 seeds, the protocol of benchmarks/adapt/bench_text.py."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "adapt"))
from bench_text import encode  # noqa: E402  (the benchmark's own features)

from transferkit.compare import compare  # noqa: E402

pytestmark = pytest.mark.slow


def test_every_adapted_row_below_source_only_is_flagged_in_the_compare_report(shared_data, tmp_path):
    encode(tmp_path, ("electronics", "dvd"), max_length=128)
    cfg = {"data": {"dataset": str(tmp_path / "dvd.npz"), "source": str(tmp_path / "electronics.npz"),
                    "unlabelled": str(tmp_path / "dvd.npz"), "val_fraction": 0.0, "test_fraction": "rest",
                    "preprocess": "standardize"},
           "model": {"backbone": "mlp", "backbone_args": {"in_features": 384, "hidden": [256], "dropout": 0.1},
                     "num_classes": 2},
           "strategy": {"name": "full"},
           "train": {"epochs": 10, "batch_size": 64, "lr": 1e-3, "device": "cpu"},
           "report": {"feature_map": "none"}}
    rows = compare(cfg, strategies=["coral", "dann"], shots=[0], seeds=3, out=tmp_path / "cmp")
    by = {r["strategy"]: r for r in rows}
    assert set(by) == {"coral", "dann", "source_only"}
    base = by["source_only"]["accuracy_mean"]
    hurt = [n for n in ("coral", "dann") if by[n]["accuracy_mean"] < base]
    assert hurt, f"no method hurt on this pair, so the flag went untested: {by}"
    for name in hurt:
        assert by[name]["negative_transfer"] and by[name]["baseline"] == "source_only", by[name]
    saved = json.loads((tmp_path / "cmp" / "results.json").read_text())["rows"]
    assert [r["negative_transfer"] for r in saved] == [r["negative_transfer"] for r in rows]
    report = (tmp_path / "cmp" / "report.html").read_text()
    assert "negative transfer" in report
    assert np.isfinite(base) and base > 55.0  # MiniLM features carry the sentiment across domains
