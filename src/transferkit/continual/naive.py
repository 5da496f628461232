"""The lower and upper bounds of continual learning: plain fine-tuning and joint training."""

from __future__ import annotations

import torch

from transferkit.continual.base import ContinualStrategy, check_heads_of_one_width, logits_by_head, task_loss
from transferkit.data.datasets import ArrayDataset
from transferkit.errors import TransferkitError


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
    return ArrayDataset(torch.cat(xs), torch.cat(ys).numpy(), name="joint",
                        task=getattr(datasets[0], "task", "classification"))


class JointTraining(ContinualStrategy):
    """Train on the union of every task seen so far (the upper bound: no forgetting by access to
    all past data). Each task trains from the previous model on all data up to that task. On a
    stream with one head per task every example goes through its own task's head.

    The union replaces the task's training set only (not a validation set given to the trainer);
    with one head per task the trainer must report row positions (in-memory data, one process,
    ``train.num_workers: 0``)."""

    name = "joint"

    def check_stream(self, stream):
        check_heads_of_one_width(self.name, stream)

    def before_task(self, model, task):
        self.__dict__["_task"] = task
        past = list(getattr(task, "seen_train", []))
        self._past = past
        head = getattr(task, "head", None)
        self.__dict__["_row_heads"] = None
        if head is not None:
            names = list(model.heads)
            if names[getattr(task, "index", 0)] != head:
                raise TransferkitError(f"joint: the model's heads {names} are not in the stream's task order; "
                                       "build the model with one head per task, in order.")
            sizes = [len(d) for d in past] + [len(task.train)]
            rows = [torch.full((n,), i, dtype=torch.long) for i, n in enumerate(sizes)]
            self.__dict__["_row_heads"] = torch.cat(rows)

    def prepare_data(self, model, dataset, phase):
        task = self.__dict__.get("_task")
        past = getattr(self, "_past", [])
        if not past or (task is not None and dataset is not task.train):
            return dataset
        return concat([*past, dataset])

    def task_weight(self):
        return 0.0 if self.__dict__.get("_row_heads") is not None else 1.0

    def loss_terms(self, batch, out, model):
        heads = self.__dict__.get("_row_heads")
        if heads is None:
            return {}
        if batch.index is None or len(batch.index) != len(batch.targets):
            raise TransferkitError("joint on a stream with one head per task needs the rows' positions from the "
                                   "trainer; set train.num_workers to 0 and train on one process.")
        rows = heads.to(batch.index.device)[batch.index]
        return {"task": task_loss(model, logits_by_head(model, out.features, rows), batch.targets)}
