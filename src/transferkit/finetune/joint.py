"""Joint source + target training: lambda * L_src + (1 - lambda) * L_tgt, lambda constant or ramped."""

from __future__ import annotations

import torch

from transferkit.errors import TransferkitError
from transferkit.strategy import Strategy, check_number
from transferkit.heads import create_head
from transferkit.tasks import create_task


def ramp(step: int, start: float, end: float, steps: int) -> float:
    """Linear schedule from ``start`` to ``end`` over ``steps`` steps, constant afterwards."""
    if steps <= 0:
        return end
    return start + (end - start) * min(step, steps) / steps


def draw_batch(data, size: int, seed: int, step: int, device) -> tuple[object, torch.Tensor]:
    """Batch ``step`` of a seeded stream of random draws from ``data`` (inputs, labels) on ``device``;
    one draw per step, so a resumed run replays the same batches."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    idx = torch.randint(len(data), (size,), generator=g).tolist()
    xs, ys = zip(*(data[i] for i in idx))
    xs = torch.stack(xs).to(device) if isinstance(xs[0], torch.Tensor) else list(xs)
    return xs, torch.as_tensor(ys, device=device)


class Joint(Strategy):
    """Train on the labelled source data alongside the target: each step adds a source batch's loss
    (own head, ``"source"``) with weight lambda and scales the target loss by 1 - lambda
    (multi-task fine-tuning as in Ge & Yu, 2017; the classic shared-representation objective).

    Args:
        source: the source dataset, ``name:domain`` or a path (as ``data.dataset``).
        weight: lambda at the start, in [0, 1).
        weight_end: lambda after ``ramp_steps`` optimizer steps (default: ``weight``, constant).
        ramp_steps: length of the linear ramp.
        batch_size: source examples per step.
        seed: seed of the source sampling (one draw per step, so a resumed run replays it).
    """

    name = "joint"
    changes_structure = True  # adds the "source" head

    def __init__(self, source: str | None = None, weight: float = 0.5, weight_end: float | None = None,
                 ramp_steps: int = 0, batch_size: int = 64, seed: int = 0) -> None:
        super().__init__()
        if not source:
            raise TransferkitError("joint: 'source' is required; give the source dataset (e.g. mnist_usps:mnist).")
        check_number("joint", "weight", weight, low=0.0, high=0.999)
        check_number("joint", "weight_end", weight if weight_end is None else weight_end, low=0.0, high=0.999)
        check_number("joint", "ramp_steps", ramp_steps, low=0, integer=True)
        check_number("joint", "batch_size", batch_size, low=1, integer=True)
        self.source, self.seed, self.batch_size = source, int(seed), int(batch_size)
        self.start, self.end, self.ramp_steps = float(weight), float(weight if weight_end is None else weight_end), int(ramp_steps)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self._data, self._task = None, None
        self._lambda = self.start

    def prepare_model(self, model):
        from transferkit.data import load_dataset

        self._task = getattr(model, "task_type", None) or create_task()  # the source head's task type: the model's
        self._data = load_dataset(self.source, task=self._task.name) if isinstance(self.source, str) else self.source
        if "source" not in model.heads:
            n = self._task.outputs(self._data.targets)
            model.heads["source"] = create_head("linear", model.backbone.num_features,
                                                max(n, 2) if self._task.name == "classification" else n)
        return model

    def task_weight(self) -> float:
        return 1.0 - self._lambda

    def loss_terms(self, batch, out, model):
        if batch.precomputed:
            raise TransferkitError("joint cannot run on cached features; use a strategy that trains on inputs.")
        step = int(self.step)
        self._lambda = ramp(step, self.start, self.end, self.ramp_steps)
        xs, ys = draw_batch(self._data, self.batch_size, self.seed, step, out.logits.device)
        self.step += 1
        return {"source": self._lambda * self._task.loss(model(xs, task="source").logits, ys)}
