"""Multi-task data: one input array and one target array per task.

Tasks on the same inputs (MultiMNIST's left and right digit) label every row for every task.
Tasks from different datasets (four review domains, four image domains) are concatenated; a row
carries a label only for its own task (``-1`` for classes, NaN for regression values elsewhere),
and each task's loss is taken over its own rows. Such data is batched either *mixed* (every batch
holds rows of every task, in proportion to the task sizes; small tasks cycle) or *alternating*
(each batch holds one task's rows, the tasks in turn).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from transferkit.errors import TransferkitError
# the per-task losses live below the engine, which computes them; re-exported here
from transferkit.losses import labelled, losses_per_task as task_losses  # noqa: F401

MISSING = -1  # the class label of a row that belongs to another task


class MixedBatches:
    """Every batch holds rows of every task, ``max(1, round(b * n_t / N))`` of task t; a task whose
    rows run out starts a fresh permutation. An epoch is ``ceil(N / b)`` batches."""

    def __init__(self, groups: list[torch.Tensor], sampler, batch_size: int) -> None:
        self.groups, self.sampler, self.batch_size = groups, sampler, batch_size
        self.n = sum(len(g) for g in groups)

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.sampler.seed * 100_003 + self.sampler.epoch)

    def __iter__(self):
        g = self._generator()
        shares = [max(1, round(self.batch_size * len(rows) / self.n)) for rows in self.groups]
        orders = [rows[torch.randperm(len(rows), generator=g)] for rows in self.groups]
        pos = [0] * len(self.groups)
        for _ in range(len(self)):
            parts = []
            for i, (rows, k) in enumerate(zip(self.groups, shares)):
                take = []
                while k > 0:
                    if pos[i] == len(rows):
                        orders[i], pos[i] = rows[torch.randperm(len(rows), generator=g)], 0
                    step = min(k, len(rows) - pos[i])
                    take.append(orders[i][pos[i]:pos[i] + step])
                    pos[i], k = pos[i] + step, k - step
                parts.extend(take)
            yield torch.cat(parts)


class AlternatingBatches(MixedBatches):
    """Each batch holds one task's rows; the tasks take turns until each has had all its rows."""

    def __len__(self) -> int:
        return sum(math.ceil(len(rows) / self.batch_size) for rows in self.groups)

    def __iter__(self):
        g = self._generator()
        queues = [list(rows[torch.randperm(len(rows), generator=g)].split(self.batch_size)) for rows in self.groups]
        while any(queues):
            for q in queues:
                if q:
                    yield q.pop(0)


class MultiTaskArrays(Dataset):
    """Inputs ``x`` with a target array per task: integer class indices, or floats (regression
    values, multi-hot rows); ``-1`` / NaN marks a row without a label for that task. The model's
    task types say which loss each task gets. Indexes by whole batches.

    Shape:
        x: ``[N, ...]``; targets: ``{task: [N]}`` (``[N, C]`` for multi-hot rows or several values).
    """

    batch_indexable = True

    def __init__(self, x, targets: dict[str, object], name: str = "multitask", batches: str = "mixed") -> None:
        self.x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32)
        if not targets:
            raise TransferkitError(f"Dataset '{name}': give at least one task's targets.")
        if batches not in ("mixed", "alternating"):
            raise TransferkitError(f"Dataset '{name}': batches must be 'mixed' or 'alternating'; got {batches!r}.")
        self.targets = {}
        for task, y in targets.items():
            y = torch.as_tensor(np.asarray(y))
            if len(y) != len(self.x):
                raise TransferkitError(f"Dataset '{name}': task '{task}' has {len(y)} targets for {len(self.x)} inputs; "
                                       "give one target per input.")
            self.targets[task] = y.float() if y.is_floating_point() else y.long()
        self.name, self.batches = name, batches

    @classmethod
    def from_tasks(cls, tasks: dict[str, tuple[object, object]], name: str = "multitask",
                   batches: str = "mixed") -> "MultiTaskArrays":
        """Concatenate one ``(x, y)`` per task (tasks from different datasets, same input shape)."""
        xs = [torch.as_tensor(np.asarray(x), dtype=torch.float32) for x, _ in tasks.values()]
        shapes = {tuple(x.shape[1:]) for x in xs}
        if len(shapes) > 1:
            raise TransferkitError(f"Dataset '{name}': the tasks' inputs differ in shape ({sorted(shapes)}); "
                                   "give every task inputs of one shape (e.g. features of one encoder).")
        targets, start, total = {}, 0, sum(len(x) for x in xs)
        for (task, (_, y)), x in zip(tasks.items(), xs):
            y = torch.as_tensor(np.asarray(y))
            shape = (total, *y.shape[1:])
            full = torch.full(shape, float("nan")) if y.is_floating_point() else torch.full(shape, MISSING)
            full[start:start + len(x)] = y.to(full.dtype)
            targets[task], start = full, start + len(x)
        return cls(torch.cat(xs), targets, name=name, batches=batches)

    def rows(self, task: str) -> torch.Tensor:
        """Indices of the rows labelled for ``task``."""
        return labelled(self.targets[task]).nonzero().flatten()

    def only(self, task: str) -> "MultiTaskArrays":
        """The single-task dataset of ``task``: its labelled rows and its targets alone."""
        idx = self.rows(task)
        return MultiTaskArrays(self.x[idx], {task: self.targets[task][idx]}, name=f"{self.name}:{task}")

    def subset(self, idx) -> "MultiTaskArrays":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return MultiTaskArrays(self.x[idx], {t: y[idx] for t, y in self.targets.items()}, name=self.name,
                               batches=self.batches)

    def batch_plan(self, sampler, batch_size: int):
        """Batches for the trainer: ``None`` (plain shuffled batches) when every row is labelled for
        every task, else mixed or alternating batches over the tasks' rows."""
        if all(bool(labelled(y).all()) for y in self.targets.values()) and self.batches == "mixed":
            return None
        groups = [self.rows(t) for t in self.targets]
        return (MixedBatches if self.batches == "mixed" else AlternatingBatches)(groups, sampler, batch_size)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], {t: y[i] for t, y in self.targets.items()}
