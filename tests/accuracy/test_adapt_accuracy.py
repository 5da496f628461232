"""Deep domain adaptation on the real JDA digits (MNIST 2,000 <-> USPS 1,800), the demo's small CNN from
scratch, the same standardised images and step budget for source-only and the adapted model."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "adapt"))
from bench_deep import PUBLISHED, run  # noqa: E402  (the benchmark's own protocol)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("src,tgt", [("mnist", "usps"), ("usps", "mnist")])
def test_mcc_beats_source_only_by_5_points_and_every_published_classic_figure(src, tgt):
    acc = {m: [run(src, tgt, m, seed, 10, 64, "standardize")["accuracy"] for seed in range(3)]
           for m in ("source_only", "mcc")}
    base, best = np.mean(acc["source_only"]), np.mean(acc["mcc"])
    assert best >= base + 5.0, acc
    assert best > max(PUBLISHED[f"{src}->{tgt}"].values()), acc  # JDA and MEDA on these files
