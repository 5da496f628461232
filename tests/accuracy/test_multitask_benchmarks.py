"""The multi-task bar on real data: over the three benchmarks (Office-Caltech10 SURF domains,
Amazon-review domains on frozen MiniLM features, MultiMNIST), the best weighter's delta-m against
single-task training is positive on at least two. Every weighter trains on each; the configs are
the examples users run (examples/multitask/*.yaml), some cut down to fit the test budget (the
overrides below); BENCHMARKS.md has the full-size figures."""

from pathlib import Path

import pytest

from transferkit.runs.multitask import run_multitask
from transferkit.multitask.weighters import WEIGHTERS

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "multitask"

CUT = {
    "office_caltech": [],
    "amazon_minilm": ["data.per_task=800", "seeds=2"],
    "multimnist": ["data.train_size=4000", "data.test_size=2000", "train.epochs=4", "seeds=1"],
}


@pytest.fixture(scope="module")
def best_delta_m(tmp_path_factory) -> dict[str, tuple[str, float]]:
    out = {}
    for name, overrides in CUT.items():
        run_dir = tmp_path_factory.mktemp(name)
        cache = ["data.cache_dir=" + str(run_dir / "cache")] if name == "amazon_minilm" else []
        summary = run_multitask(EXAMPLES / f"{name}.yaml", run_dir / "run", progress=False, overrides=overrides + cache)
        assert set(WEIGHTERS.names()) <= set(summary)  # every weighter trained
        best = max((w for w in summary if "delta_m" in summary[w]), key=lambda w: summary[w]["delta_m"])
        out[name] = (best, summary[best]["delta_m"])
        print(name, out[name])
    return out


def test_the_best_weighter_beats_single_task_training_on_two_of_the_three_benchmarks(best_delta_m):
    positive = [name for name, (_, dm) in best_delta_m.items() if dm > 0]
    assert len(positive) >= 2, f"best weighter per benchmark (Δm %): {best_delta_m}"
