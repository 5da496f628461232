"""Meta-learning on real data (issue 14, must-show 2): Prototypical Networks on Omniglot's meta-test
characters (Vinyals split, 28x28, rotation classes), 5-way 1-shot, against the fine-tuning baseline of
"A Closer Look at Few-shot Classification" given the same number of training images (slow; part of
`make test`).

Budgets (one CPU thread each, about 3 minutes apiece):
- ProtoNets: 300 episodes of 60 ways x (1 support + 5 queries), 108,000 images; Adam at 1e-3.
- Baseline: 1,700 batches of 64 images (108,800 images) of ordinary classification over the 4,112
  meta-train (character, rotation) classes, Adam at 1e-3; then a new linear head on each support set's
  frozen features (100 steps at 0.1).
Test: 300 5-way 1-shot episodes of the meta-test characters, 15 queries per class (the CI is printed).
"""

from pathlib import Path

import pytest

from transferkit.runs.meta import run_meta

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
OMNIGLOT = ROOT.parent / "shared/data/omniglot/omniglot.npz"
EPISODES = 300
TRAIN = {"eval_every": 100, "val_episodes": 50, "test_episodes": EPISODES, "device": "cpu"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    if not OMNIGLOT.is_file():
        pytest.skip(f"{OMNIGLOT} is missing")
    out = tmp_path_factory.mktemp("meta")
    proto = run_meta(ROOT / "examples/meta/omniglot_protonet.yaml", out / "protonet", progress=False,
                     overrides=[f"data.dataset={OMNIGLOT}", "train.iterations=300"] + [f"train.{k}={v}" for k, v in TRAIN.items()])
    base = run_meta(ROOT / "examples/meta/omniglot_protonet.yaml", out / "finetune", progress=False,
                    overrides=[f"data.dataset={OMNIGLOT}", "method.name=finetune", "method.batch_size=64",
                               "train.iterations=1700"] + [f"train.{k}={v}" for k, v in TRAIN.items()]
                    + ["train.eval_every=850"])
    for r in (proto, base):
        print(r["method"], r["test"], f"{r['train_seconds']:.0f} s")
    return proto["test"], base["test"]


def test_protonets_reach_95_percent_at_5_way_1_shot(runs):
    proto, _ = runs
    assert proto["episodes"] == EPISODES and proto["accuracy"] >= 0.95, proto


def test_protonets_beat_the_fine_tuning_baseline_at_1_shot(runs):
    proto, base = runs
    assert proto["accuracy"] - proto["ci95"] > base["accuracy"], (proto, base)
