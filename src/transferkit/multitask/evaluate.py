"""Per-task metrics of a multi-task model: accuracy for classification tasks, mean squared error
for regression tasks; ``accuracy`` is the mean over the classification tasks."""

from __future__ import annotations

import torch
from transferkit.engine.evaluate import batches, move


@torch.no_grad()
def evaluate_multitask(model, dataset, batch_size: int = 256, prefix: str = "") -> dict[str, float]:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sums: dict[str, float] = {}
    n = 0
    for x, targets in batches(dataset, batch_size):
        out = model(move(x, device))
        for t, y in targets.items():
            y = y.to(device)
            if y.is_floating_point():
                key, value = f"{t}/mse", float(((out.logits[t].squeeze(-1) - y) ** 2).sum())
            else:
                key, value = f"{t}/accuracy", float((out.logits[t].argmax(-1) == y).sum())
            sums[key] = sums.get(key, 0.0) + value
        n += len(x)
    model.train(was_training)
    metrics = {f"{prefix}{k}": v / max(n, 1) for k, v in sums.items()}
    accs = [v for k, v in metrics.items() if k.endswith("/accuracy")]
    if accs:
        metrics[f"{prefix}accuracy"] = sum(accs) / len(accs)
    return metrics
