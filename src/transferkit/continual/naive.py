"""The lower and upper bounds of continual learning: plain fine-tuning and joint training."""

from __future__ import annotations

import torch

from transferkit.continual.base import ContinualStrategy
from transferkit.data.datasets import ArrayDataset


class Naive(ContinualStrategy):
    """Fine-tune on each task in turn with nothing against forgetting (the lower bound, "SGD")."""

    name = "naive"


def concat(datasets) -> ArrayDataset:
    """One in-memory dataset holding every example of ``datasets`` (which index by batch)."""
    xs, ys = [], []
    for ds in datasets:
        x, y = ds[list(range(len(ds)))]
        xs.append(x)
        ys.append(torch.as_tensor(y))
    return ArrayDataset(torch.cat(xs), torch.cat(ys).numpy(), name="joint")


class JointTraining(ContinualStrategy):
    """Train on the union of every task seen so far (the upper bound: no forgetting by access to
    all past data). Each task trains from the previous model on all data up to that task."""

    name = "joint"

    def prepare_data(self, model, dataset, phase):
        past = getattr(self, "_past", [])
        return concat([*past, dataset]) if past else dataset

    def before_task(self, model, task):
        self._past = list(getattr(task, "seen_train", []))
