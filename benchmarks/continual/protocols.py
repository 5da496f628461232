"""The MNIST continual-learning protocols of Buzzega et al. (2020, "Dark Experience for General
Continual Learning", the Mammoth framework): MLP 784-100-100-10 (Glorot init), plain SGD, one
epoch per task. Split-MNIST: 5 tasks of 2 classes, batch 10 (class-IL and task-IL from one run).
Permuted-MNIST: 20 tasks, batch 128 (domain-IL). Hyperparameters per strategy and buffer size
are the framework's published best ones (its best_args table); LwF on Permuted-MNIST has none
published and uses Split-MNIST's weights at the permuted protocol's learning rate.
"""

from __future__ import annotations

import os

import torch

from transferkit.backbones import create_backbone
from transferkit.config import TrainSettings
from transferkit.data.registry import load_dataset
from transferkit.data.streams import permuted, split_classes
from transferkit.heads import create_head
from transferkit.model import TransferModel

# (strategy, buffer) -> (lr, strategy kwargs); buffer None for the regularisation methods
SPLIT = {
    ("naive", None): (0.03, {}),
    ("oewc", None): (0.03, {"weight": 90.0, "gamma": 1.0}),
    ("si", None): (0.1, {"weight": 1.0, "damping": 0.9}),
    ("lwf", None): (0.03, {"weight": 1.0, "temperature": 2.0}),
    ("er", 200): (0.01, {"batch_size": 10}),
    ("er", 500): (0.1, {"batch_size": 10}),
    ("agem", 200): (0.1, {"batch_size": 128}),
    ("agem", 500): (0.1, {"batch_size": 128}),
    ("der", 200): (0.03, {"batch_size": 10, "weight": 0.2}),
    ("der", 500): (0.03, {"batch_size": 128, "weight": 1.0}),
    ("derpp", 200): (0.03, {"batch_size": 128, "weight": 0.2, "replay_weight": 1.0}),
    ("derpp", 500): (0.03, {"batch_size": 10, "weight": 1.0, "replay_weight": 0.5}),
}
PERMUTED = {
    ("naive", None): (0.2, {}),
    ("oewc", None): (0.1, {"weight": 0.7, "gamma": 1.0}),
    ("si", None): (0.1, {"weight": 0.5, "damping": 1.0}),
    ("lwf", None): (0.2, {"weight": 1.0, "temperature": 2.0}),
    ("er", 200): (0.2, {"batch_size": 128}),
    ("er", 500): (0.2, {"batch_size": 128}),
    ("agem", 200): (0.1, {"batch_size": 128}),
    ("agem", 500): (0.1, {"batch_size": 128}),
    ("der", 200): (0.2, {"batch_size": 128, "weight": 1.0}),
    ("der", 500): (0.2, {"batch_size": 128, "weight": 1.0}),
    ("derpp", 200): (0.1, {"batch_size": 128, "weight": 1.0, "replay_weight": 1.0}),
    ("derpp", 500): (0.2, {"batch_size": 128, "weight": 1.0, "replay_weight": 0.5}),
}
BATCH = {"split": 10, "permuted": 128}
GRID = {"split": SPLIT, "permuted": PERMUTED}


def mnist(data_dir: str | None = None):
    root = data_dir or os.environ.get("TRANSFERKIT_DATA", "../shared/data")
    return load_dataset("mnist:train", root), load_dataset("mnist:test", root)


def stream(protocol: str, train, test):
    return split_classes(train, test, 2, name="split_mnist") if protocol == "split" else \
        permuted(train, test, 20, seed=0, name="permuted_mnist")


def mlp(seed: int) -> TransferModel:
    torch.manual_seed(seed)
    backbone = create_backbone("mlp", in_features=784, hidden=(100, 100), init="xavier")
    return TransferModel(backbone, create_head("linear", 100, 10, init="xavier"))


def settings(protocol: str, lr: float, seed: int) -> TrainSettings:
    return TrainSettings(epochs=1, batch_size=BATCH[protocol], lr=lr, optimizer="sgd", momentum=0.0, seed=seed)


def strategy_args(name: str, buffer: int | None, kwargs: dict) -> dict:
    return kwargs | ({"size": buffer} if buffer else {})
