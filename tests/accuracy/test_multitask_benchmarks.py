"""The multi-task bars on real data: of the three benchmarks (Office-Caltech10 SURF domains,
Amazon-review domains on frozen MiniLM features, MultiMNIST), the best weighter's delta-m against
single-task training is positive on at least two, and so is the best of each family: the loss
weighters that set the weights themselves (uncertainty, DWA, RLW, GradNorm) and the gradient-based
methods (MGDA-UB, PCGrad, CAGrad, IMTL-G). Every weighter trains on each; the configs are the
examples users run (examples/multitask/*.yaml), some cut down to fit the test budget (the
overrides below); BENCHMARKS.md has the full-size figures.

The bar is held on Office-Caltech and Amazon, both of which must be positive (two of the three).
MultiMNIST, where every weighter sits within about a point of single-task training even at full size
(BENCHMARKS.md), trains here only as a check that every weighter runs on a shared CNN with shared
inputs: 600 images and one epoch, no bar on its figures."""

import math
from pathlib import Path

import pytest

from transferkit.runs.multitask import run_multitask
from transferkit.multitask.weighters import WEIGHTERS

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "multitask"

CUT = {
    "office_caltech": [],
    "amazon_minilm": ["data.per_task=800", "seeds=2"],
}
SMOKE = {"multimnist": ["data.train_size=600", "data.test_size=300", "train.epochs=1", "seeds=1"]}
REFERENCES = {"equal", "fixed"}  # the plain sum and hand-set weights: no method of either family
FAMILIES = {
    "gradient-based": [n for n in WEIGHTERS.names() if hasattr(WEIGHTERS.get(n), "aggregate")],
    "loss weighting": [n for n in WEIGHTERS.names() if not hasattr(WEIGHTERS.get(n), "aggregate") and n not in REFERENCES],
}


@pytest.fixture(scope="module")
def delta_ms(tmp_path_factory) -> dict[str, dict[str, float]]:
    """Per benchmark, every weighter's delta-m %."""
    out = {}
    for name, overrides in (CUT | SMOKE).items():
        run_dir = tmp_path_factory.mktemp(name)
        cache = ["data.cache_dir=" + str(run_dir / "cache")] if name == "amazon_minilm" else []
        summary = run_multitask(EXAMPLES / f"{name}.yaml", run_dir / "run", progress=False, overrides=overrides + cache)
        assert set(WEIGHTERS.names()) <= set(summary)  # every weighter trained
        out[name] = {w: summary[w]["delta_m"] for w in WEIGHTERS.names() if "delta_m" in summary[w]}
        print(name, {w: round(v, 2) for w, v in out[name].items()})
    return out


def _best(delta_ms, names) -> dict[str, tuple[str, float]]:
    """Per benchmark held to the bar (``CUT``), the best of ``names`` and its delta-m."""
    return {bench: max(((w, dm[w]) for w in names if w in dm), key=lambda p: p[1])
            for bench, dm in delta_ms.items() if bench in CUT}


def test_the_families_are_the_registered_weighters():
    assert sorted(FAMILIES["gradient-based"]) == ["cagrad", "imtl_g", "mgda", "pcgrad"]
    assert sorted(FAMILIES["loss weighting"]) == ["dwa", "gradnorm", "rlw", "uncertainty"]


def test_every_weighter_runs_on_multimnist(delta_ms):
    dm = delta_ms["multimnist"]
    assert set(dm) == set(WEIGHTERS.names()) and all(math.isfinite(v) for v in dm.values()), dm


def test_the_best_weighter_beats_single_task_training_on_two_of_the_three_benchmarks(delta_ms):
    best = _best(delta_ms, WEIGHTERS.names())
    positive = [name for name, (_, dm) in best.items() if dm > 0]
    assert len(positive) >= 2, f"best weighter per benchmark (Δm %): {best}"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_best_of_each_family_beats_single_task_training_on_two_of_the_three_benchmarks(delta_ms, family):
    best = _best(delta_ms, FAMILIES[family])
    positive = [name for name, (_, dm) in best.items() if dm > 0]
    assert len(positive) >= 2, f"best {family} weighter per benchmark (Δm %): {best}"
    # Office-Caltech runs at full size here: BENCHMARKS.md gives +3.71 % (RLW) and +4.12 % (PCGrad);
    # cut-down Amazon measured +2.49 % (DWA) and +2.69 % (IMTL-G)
    assert best["office_caltech"][1] > 2.0, f"best {family} weighter on Office-Caltech: {best['office_caltech']}"
    assert best["amazon_minilm"][1] > 1.0, f"best {family} weighter on Amazon: {best['amazon_minilm']}"
