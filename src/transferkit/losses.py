"""The task losses of a batch: what the trainer hands to ``Strategy.backward``.

One head: ``{"task": cross-entropy}``. A multi-task output (``logits`` is a ``{task: [B, C_t]}``
dict): per task, the mean loss over the rows labelled for it (cross-entropy for class targets,
mean squared error for float targets; ``-1`` / NaN marks a row without a label for that task).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def labelled(y: torch.Tensor) -> torch.Tensor:
    """The rows that carry a label for this task. Shape: ``[N]`` bool."""
    return ~torch.isnan(y) if y.is_floating_point() else y >= 0


def losses_per_task(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per task, the mean loss over its labelled rows: cross-entropy for class targets, mean
    squared error for float targets. Tasks without a labelled row in the batch are left out."""
    out = {}
    for t, y in targets.items():
        keep = labelled(y)
        if not bool(keep.any()):
            continue
        z, y = logits[t][keep], y[keep]
        out[t] = F.mse_loss(z.squeeze(-1), y) if y.is_floating_point() else F.cross_entropy(z, y)
    return out


def task_losses(out, targets) -> dict[str, torch.Tensor]:
    """The losses of a model output ``out`` (``.logits``) against ``targets``, keyed by task."""
    if isinstance(out.logits, dict):
        return losses_per_task(out.logits, targets)
    return {"task": F.cross_entropy(out.logits, targets)}
