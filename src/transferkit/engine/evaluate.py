"""Inference helpers shared by the trainer, ``eval`` and ``predict``; metrics come from the model's task types."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from transferkit.data.batches import batches, move  # noqa: F401  (re-exported)
from transferkit.data.datasets import length_order
from transferkit.model import TransferModel
from transferkit.tasks import labelled, task_for


def _cat(parts: list, order: torch.Tensor):
    """Concatenate batches (tensors, or ``{task: tensor}``) and put the rows in ``order``."""
    if isinstance(parts[0], dict):
        return {k: torch.cat([p[k] for p in parts])[order] for k in parts[0]}
    return torch.cat(parts)[order]


def _cpu(z):
    return {k: v.float().cpu() for k, v in z.items()} if isinstance(z, dict) else z.float().cpu()


def predict_logits(model: TransferModel, dataset: Dataset, batch_size: int = 256, precomputed: bool = False,
                   task: str | None = None, device: torch.device | None = None):
    """Outputs and targets over ``dataset`` in eval mode (training mode restored afterwards).

    Shape:
        returns ``([N, C], [N])`` on the CPU (targets ``[N, C]`` for multi-hot rows); a multi-task
        model, which answers every task at once, gives ``({task: [N, C_t]}, {task: [N]})``.
    """
    logits, _, targets = predict_outputs(model, dataset, batch_size, precomputed, task, device, features=False)
    return logits, targets


@torch.no_grad()
def predict_outputs(model: TransferModel, dataset: Dataset, batch_size: int = 256, precomputed: bool = False,
                    task: str | None = None, device: torch.device | None = None, features: bool = True):
    """``predict_logits`` with the backbone's features too: ``(logits, features or None, targets)``.

    Shape:
        features: ``[N, D]``.
    """
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    ordered, order = length_order(dataset)
    logits, feats, targets = [], [], []
    for x, y in batches(ordered, batch_size):
        out = model(move(x, device), task=task, precomputed=precomputed)
        logits.append(_cpu(out.logits))
        if features:
            feats.append(_cpu(out.features))
        targets.append({k: torch.as_tensor(v) for k, v in y.items()} if isinstance(y, dict) else torch.as_tensor(y))
    model.train(was_training)
    inverse = torch.as_tensor(np.argsort(order))
    return _cat(logits, inverse), (_cat(feats, inverse) if features else None), _cat(targets, inverse)


def evaluate(model: TransferModel, dataset: Dataset, batch_size: int = 256, precomputed: bool = False,
             task: str | None = None, prefix: str = "") -> dict[str, float]:
    """The metrics of the model's task type over ``dataset``: ``{prefix+"loss", prefix+"accuracy", ...}``
    (see ``transferkit.tasks``). A model that answers several tasks at once gets each task's metrics over
    its labelled rows as ``<task>/<metric>``, with ``loss`` their sum and ``accuracy`` the mean accuracy
    of its classification tasks."""
    logits, targets = predict_logits(model, dataset, batch_size, precomputed, task)
    if not isinstance(logits, dict):
        return {prefix + k: v for k, v in task_for(model.tasks, task).metrics(logits, targets).items()}
    metrics: dict[str, float] = {}
    for t, y in targets.items():
        keep = labelled(y)
        if bool(keep.any()):
            metrics |= {f"{t}/{k}": v for k, v in model.tasks[t].metrics(logits[t][keep], y[keep]).items()}
    losses = [v for k, v in metrics.items() if k.endswith("/loss")]
    accs = [v for k, v in metrics.items() if k.endswith("/accuracy")]
    metrics |= ({"loss": sum(losses)} if losses else {}) | ({"accuracy": sum(accs) / len(accs)} if accs else {})
    return {prefix + k: v for k, v in metrics.items()}
