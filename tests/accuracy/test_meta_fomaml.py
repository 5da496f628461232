"""Meta-learning on real data (issue 14, must-show 2): first-order MAML on Omniglot's meta-test characters
(Vinyals split, 28x28, rotation classes), 5-way 1-shot, against the fine-tuning baseline of "A Closer Look
at Few-shot Classification" given the same number of training images (slow; part of `make test`).

Budgets (one CPU thread each):
- first-order MAML, `examples/meta/omniglot_fomaml.yaml` with 8 tasks per outer update and the zeroing
  trick (`method.zero_head`: every task's head starts at zero, Kao et al., 2022): 600 outer updates of
  8 episodes x (5 support + 5 query images), 48,000 images, about 5.5 minutes; 5 inner steps at 0.4 in
  training, 10 at test; Adam at 1e-3.
- Baseline: 750 batches of 64 images (48,000) of ordinary classification over the 4,112 meta-train
  (character, rotation) classes, Adam at 1e-3; then a new linear head on each support set's frozen
  features (100 steps at 0.1).
Test: 300 5-way 1-shot episodes of the meta-test characters, 15 queries per class.
"""

import pytest

from omniglot_meta import EPISODES, meta_and_baseline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    # 600 updates of 8 episodes x (5 support + 5 query images) = 48,000 images = 750 batches of 64
    return meta_and_baseline(tmp_path_factory.mktemp("meta"), "omniglot_fomaml.yaml",
                             ["method.zero_head=true", "method.meta_batch=8"], 600, 750)


def test_first_order_maml_reaches_90_percent_at_5_way_1_shot(runs):
    fomaml, _ = runs
    assert fomaml["episodes"] == EPISODES and fomaml["accuracy"] >= 0.90, fomaml


def test_first_order_maml_beats_the_fine_tuning_baseline_at_1_shot(runs):
    fomaml, base = runs
    assert fomaml["accuracy"] - fomaml["ci95"] > base["accuracy"], (fomaml, base)
