"""Experience replay (Chaudhry et al., 2019 "On tiny episodic memories"; Riemer et al., 2019)."""

from __future__ import annotations

import torch

from transferkit.continual.base import ContinualStrategy
from transferkit.continual.buffers import ClassBalancedBuffer, ReservoirBuffer, balanced_subset
from transferkit.errors import TransferkitError
from transferkit.strategy import Batch, check_number

BUFFERS = {"reservoir": ReservoirBuffer, "class_balanced": ClassBalancedBuffer}


def make_buffer(owner: str, size: int, buffer: str, compact: bool = True) -> ReservoirBuffer:
    check_number(owner, "size", size, low=1, integer=True)
    if buffer not in BUFFERS:
        raise TransferkitError(f"{owner}: 'buffer' must be one of {', '.join(BUFFERS)}; got {buffer!r}.")
    return BUFFERS[buffer](size, compact=compact)


FILLS = ("online", "task_end")


def check_fill(owner: str, fill: str) -> str:
    if fill not in FILLS:
        raise TransferkitError(f"{owner}: 'fill' must be one of {', '.join(FILLS)}; got {fill!r}.")
    return fill


def refill(buffer: ReservoirBuffer, new: dict[str, torch.Tensor], key: str) -> ReservoirBuffer:
    """The memory after a task when it is filled at task ends: the stored items plus the task's,
    cut to an equal random share per value of ``key`` (``"y"``: per class; ``"task"``: per task)."""
    old = buffer.all() if len(buffer) else {k: v[:0] for k, v in new.items()}
    device = buffer.seen.device
    items = {k: torch.cat([old[k].to(device), new[k].to(device)]) for k in new}
    quota = buffer.size // len(torch.unique(items[key]))
    keep = balanced_subset(items[key], quota).to(device)
    fresh = type(buffer)(buffer.size, buffer.compact).to(device)
    fresh.add(items["x"][keep], items["y"][keep], **{k: v[keep] for k, v in items.items() if k not in ("x", "y")})
    return fresh


def task_data(task, device) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = task.train[list(range(len(task.train)))]
    return x.to(device), torch.as_tensor(y).to(device)


def with_replay(batch: Batch, buffer: ReservoirBuffer, n: int | None) -> Batch:
    """The stream batch with ``n`` (default: as many) stored examples appended."""
    stream_only(batch)
    if len(buffer) == 0:
        return batch
    mem = buffer.sample(n or len(batch.targets))
    return Batch(torch.cat([batch.x, mem["x"].to(batch.x.dtype)]), torch.cat([batch.targets, mem["y"]]),
                 batch.task, batch.precomputed)


def stream_only(batch: Batch) -> None:
    if not isinstance(batch.x, torch.Tensor):
        raise TransferkitError("Replay stores tensors; for text, train on cached features (a frozen encoder) "
                               "or use a regularisation strategy such as lwf or ewc.")


class ER(ContinualStrategy):
    """Experience replay: every step trains on the stream batch plus ``batch_size`` examples drawn
    from a memory of at most ``size`` past examples; each stream batch is then offered to the memory.

    Args:
        size: memory size in examples.
        batch_size: replayed examples per step (None: as many as the stream batch).
        buffer: ``reservoir`` (uniform over the stream) or ``class_balanced``.
        compact: keep 8-bit images as ``uint8`` in memory (False: as ``float32``).
        fill: ``online`` (offer every stream batch, as in the papers) or ``task_end`` (after each
            task, keep an equal random share of every task seen, as Avalanche's default replay).
    """

    name = "er"

    def __init__(self, size: int = 200, batch_size: int | None = None, buffer: str = "reservoir",
                 compact: bool = True, fill: str = "online") -> None:
        super().__init__()
        if batch_size is not None:
            check_number("er", "batch_size", batch_size, low=1, integer=True)
        self.batch_size = batch_size
        self.buffer = make_buffer("er", size, buffer, compact)
        self.fill = check_fill("er", fill)

    def prepare_batch(self, batch):
        return with_replay(batch, self.buffer, self.batch_size)

    def after_step(self, model, batch, out):
        if self.fill == "online":
            self.buffer.add(batch.x, batch.targets)

    def after_task(self, model, task):
        if self.fill == "task_end":
            x, y = task_data(task, self.buffer.seen.device)
            self.buffer = refill(self.buffer, {"x": x, "y": y, "task": torch.full_like(y, task.index)}, "task")
