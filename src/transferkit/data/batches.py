"""Walking a dataset in order, a batch at a time, and moving (possibly nested) batches to a device:
shared by the training loop, evaluation and the strategies that run a model over data (LwF's
teacher outputs, per-task metrics)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset


def move(x, device: torch.device):
    """``x`` on ``device`` when it is a tensor; a dict (multi-task targets) entry by entry."""
    if isinstance(x, dict):  # multi-task targets
        return {k: move(v, device) for k, v in x.items()}
    return x.to(device, non_blocking=True) if isinstance(x, torch.Tensor) else x


def batches(dataset: Dataset, batch_size: int):
    """The dataset's items in order, ``batch_size`` at a time: whole-batch indexing when the
    dataset supports it (``batch_indexable``), a DataLoader otherwise."""
    if getattr(dataset, "batch_indexable", False):
        for a in range(0, len(dataset), batch_size):
            yield dataset[list(range(a, min(a + batch_size, len(dataset))))]
    else:
        yield from DataLoader(dataset, batch_size=batch_size, shuffle=False)
