"""The MNIST continual-learning protocols of Buzzega et al. (2020) on the full MNIST, with bars
that can fail (published: ER(200) 80.4 %, DER++(200) 85.6 % Split-MNIST class-IL; DER++(200)
83.6 % Permuted-MNIST domain-IL; plain SGD forgets down to ~20 %). The configs are the examples
users run: examples/continual/*.yaml."""

from pathlib import Path

import pytest

from transferkit.runs.continual import run_continual

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "continual"


def final_accuracy(tmp_path, config: str, setting: str, *overrides: str) -> float:
    results = run_continual(EXAMPLES / config, tmp_path / "run", progress=False,
                            overrides=["compare.strategies=[]", *overrides])
    return 100 * next(iter(results.values())).summary()[setting]["average_accuracy"]


def test_split_mnist_plain_sgd_forgets(tmp_path, shared_data):
    acc = final_accuracy(tmp_path, "split_mnist.yaml", "class_il", "strategy.name=naive", "strategy.args={}",
                         "train.lr=0.03")
    assert acc <= 25.0


def test_split_mnist_er_200(tmp_path, shared_data):
    assert final_accuracy(tmp_path, "split_mnist.yaml", "class_il") >= 78.0


def test_split_mnist_derpp_200(tmp_path, shared_data):
    acc = final_accuracy(tmp_path, "split_mnist.yaml", "class_il", "strategy.name=derpp",
                         "strategy.args={size: 200, batch_size: 128, weight: 0.2, replay_weight: 1.0}", "train.lr=0.03")
    assert acc >= 83.0


def test_permuted_mnist_derpp_200(tmp_path, shared_data):
    assert final_accuracy(tmp_path, "permuted_mnist.yaml", "domain_il") >= 80.0
