"""strategy auto on two of the benchmark tasks (real MNIST -> USPS digits, the demo's settings): its choice
reaches at least 95 % of the best mean test accuracy that `compare` finds among the strategies it is
checked against (slow; part of `make test`)."""

import pytest

from transferkit import train
from transferkit.compare import SOURCE_ONLY, compare
from transferkit.demo import DemoSettings, adapt_config, few_shot_variants, source_config, target_config

pytestmark = pytest.mark.slow

SEEDS = 2  # the demo runs 3; 2 keep the module near a minute on 2 quiet CPU cores
BAR = 0.95  # auto's mean accuracy as a fraction of the best compared strategy's


@pytest.fixture(scope="module")
def demo_source(tmp_path_factory):
    """The demo's source: the small CNN on the 2,000 standardised MNIST digits, 15 epochs."""
    s = DemoSettings(seeds=SEEDS)
    out = tmp_path_factory.mktemp("auto")
    train(source_config(s), out=out / "source", progress=False)
    return s, out / "source" / "model.safetensors", out


def _rows(rows, k):
    return {r["strategy"]: r for r in rows if r["shots"] == k}


def test_auto_at_3_labels_per_class_reaches_95_percent_of_the_best_fine_tuning(demo_source):
    """3 USPS labels per class, no unlabelled data: auto against the demo's feature extraction and full
    fine-tuning (both from the source head, fine-tuning at a tenth of the rate) and from scratch."""
    s, weights, out = demo_source
    cfg = target_config(s, weights)
    cfg["compare"] = {"variants": few_shot_variants(s)}
    rows = _rows(compare(cfg, ["feature_extraction", "full", "auto"], [3], SEEDS, out / "k3", show_table=False), 3)
    best = max(r["accuracy_mean"] for n, r in rows.items() if n != "auto")
    print({n: round(r["accuracy_mean"], 1) for n, r in rows.items()})
    assert rows["auto"]["chosen"] == "full", rows["auto"]
    assert rows["auto"]["accuracy_mean"] >= BAR * best, {n: r["accuracy_mean"] for n, r in rows.items()}


def test_auto_at_0_labels_reaches_95_percent_of_the_best_adaptation(demo_source):
    """0 USPS labels, the MNIST labels and the unlabelled USPS images: auto (which picks MCC at its own weight)
    against DANN, MCC at the paper's weight (1.0) and the source model as it is."""
    s, weights, out = demo_source
    cfg = adapt_config(s, weights) | {"report": {"feature_map": "none"}}
    rows = _rows(compare(cfg, ["auto", "dann", "mcc"], [0], SEEDS, out / "k0", show_table=False), 0)
    assert {"auto", "dann", "mcc", SOURCE_ONLY} <= set(rows)
    best = max(r["accuracy_mean"] for n, r in rows.items() if n != "auto")
    print({n: round(r["accuracy_mean"], 1) for n, r in rows.items()})
    assert rows["auto"]["chosen"] == "mcc", rows["auto"]
    assert rows["auto"]["accuracy_mean"] >= BAR * best, {n: r["accuracy_mean"] for n, r in rows.items()}
