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

import pytest

from omniglot_meta import EPISODES, meta_and_baseline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return meta_and_baseline(tmp_path_factory.mktemp("meta"), "omniglot_protonet.yaml", [], 300, 1700)


def test_protonets_reach_95_percent_at_5_way_1_shot(runs):
    proto, _ = runs
    assert proto["episodes"] == EPISODES and proto["accuracy"] >= 0.95, proto


def test_protonets_beat_the_fine_tuning_baseline_at_1_shot(runs):
    proto, base = runs
    assert proto["accuracy"] - proto["ci95"] > base["accuracy"], (proto, base)
