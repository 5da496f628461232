"""Shared by the meta-learning accuracy tests: a meta-learner and the fine-tuning baseline of "A Closer
Look at Few-shot Classification" trained on Omniglot's meta-train characters (Vinyals split) and tested on
the same 300 5-way 1-shot episodes of its meta-test characters (15 queries per class)."""

from pathlib import Path

import pytest

from transferkit.runs.meta import run_meta

ROOT = Path(__file__).resolve().parents[2]
OMNIGLOT = ROOT.parent / "shared/data/omniglot/omniglot.npz"
EPISODES = 300


def meta_and_baseline(out: Path, example: str, meta: list[str], iterations: int, baseline_batches: int):
    """Test results (``results.json``'s "test") of ``examples/meta/<example>`` with the ``meta`` overrides
    for ``iterations`` outer updates, and of the baseline: ``baseline_batches`` batches of 64 images of
    ordinary classification over the meta-train classes, then a new linear head on each support set's
    frozen features (100 steps at 0.1). One meta-validation, at the end."""
    if not OMNIGLOT.is_file():
        pytest.skip(f"{OMNIGLOT} is missing")
    common = [f"data.dataset={OMNIGLOT}", "train.val_episodes=50", f"train.test_episodes={EPISODES}", "train.device=cpu"]
    budget = lambda n: [f"train.iterations={n}", f"train.eval_every={n}"]  # noqa: E731
    config = ROOT / "examples/meta" / example
    res = [run_meta(config, out / "meta", progress=False, overrides=common + meta + budget(iterations)),
           run_meta(config, out / "finetune", progress=False,
                    overrides=common + ["method.name=finetune", "method.batch_size=64", "method.inner_steps=100",
                                        "method.eval_inner_steps=100", "method.inner_lr=0.1"] + budget(baseline_batches))]
    for r in res:
        print(r["method"], r["test"], f"{r['train_seconds']:.0f} s")
    return res[0]["test"], res[1]["test"]
