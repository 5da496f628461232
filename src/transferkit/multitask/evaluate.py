"""Per-task metrics of a multi-task model: accuracy for classification tasks, mean squared error
for regression tasks, each over the rows labelled for that task; ``accuracy`` is the mean over
the classification tasks."""

from __future__ import annotations

import torch

from transferkit.data.batches import batches, move
from transferkit.multitask.data import labelled


@torch.no_grad()
def evaluate_multitask(model, dataset, batch_size: int = 256, prefix: str = "") -> dict[str, float]:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for x, targets in batches(dataset, batch_size):
        out = model(move(x, device))
        for t, y in targets.items():
            y = y.to(device)
            keep = labelled(y)
            z, y = out.logits[t][keep], y[keep]
            if y.is_floating_point():
                key, value = f"{t}/mse", float(((z.squeeze(-1) - y) ** 2).sum())
            else:
                key, value = f"{t}/accuracy", float((z.argmax(-1) == y).sum())
            sums[key] = sums.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + int(keep.sum())
    model.train(was_training)
    metrics = {f"{prefix}{k}": v / max(counts[k], 1) for k, v in sums.items()}
    accs = [v for k, v in metrics.items() if k.endswith("/accuracy")]
    if accs:
        metrics[f"{prefix}accuracy"] = sum(accs) / len(accs)
    return metrics
