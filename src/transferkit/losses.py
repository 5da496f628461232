"""The task losses of a batch: what the trainer hands to ``Strategy.backward``.

Each loss is that of the head's task type (``model.tasks``; see ``transferkit.tasks``): cross-entropy,
binary cross-entropy per label, or MSE / L1. One head: ``{"task": loss}``. A multi-task output
(``logits`` is a ``{task: [B, C_t]}`` dict): per task, the mean loss of its declared type over the rows
labelled for it (``-1`` / NaN marks a row without a label for that task).
"""

from __future__ import annotations

import torch

from transferkit.tasks import TaskType, labelled, task_for

__all__ = ["labelled", "losses_per_task", "task_losses"]


def losses_per_task(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                    tasks: dict[str, TaskType]) -> dict[str, torch.Tensor]:
    """Per task, the mean loss of its declared task type (``tasks``, e.g. the model's) over its
    labelled rows. Tasks without a labelled row in the batch are left out."""
    out = {}
    for t, y in targets.items():
        keep = labelled(y)
        if not bool(keep.any()):
            continue
        out[t] = tasks[t].loss(logits[t][keep], y[keep])
    return out


def task_losses(out, targets, tasks: dict[str, TaskType], head: str | None = None,
                unlabelled: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The losses of a model output ``out`` (``.logits``) against ``targets``, keyed by task, each
    from its task type in ``tasks`` (the model's); ``head`` is the head a single-head batch trains
    (None: the model's first). Rows marked in ``unlabelled`` (bool ``[B]``) are left out; a batch
    with no labelled row gives no task loss."""
    if isinstance(out.logits, dict):
        return losses_per_task(out.logits, targets, tasks)
    logits = out.logits
    if unlabelled is not None:
        keep = ~unlabelled
        if not bool(keep.any()):
            return {}
        logits, targets = logits[keep], targets[keep]
    return {"task": task_for(tasks, head).loss(logits, targets)}
