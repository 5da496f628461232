"""Multi-task data: one input array and one target array per task (same inputs, several labels)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from transferkit.errors import TransferkitError


class MultiTaskArrays(Dataset):
    """Inputs ``x`` with a target array per task: integer targets are classes (cross-entropy),
    float targets are regression values (mean squared error). Indexes by whole batches.

    Shape:
        x: ``[N, ...]``; targets: ``{task: [N]}``.
    """

    batch_indexable = True

    def __init__(self, x, targets: dict[str, object], name: str = "multitask") -> None:
        self.x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32)
        if not targets:
            raise TransferkitError(f"Dataset '{name}': give at least one task's targets.")
        self.targets = {}
        for task, y in targets.items():
            y = torch.as_tensor(np.asarray(y))
            if len(y) != len(self.x):
                raise TransferkitError(f"Dataset '{name}': task '{task}' has {len(y)} targets for {len(self.x)} inputs; "
                                       "give one target per input.")
            self.targets[task] = y.float() if y.is_floating_point() else y.long()
        self.name = name

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], {t: y[i] for t, y in self.targets.items()}
