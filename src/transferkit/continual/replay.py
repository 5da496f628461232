"""Experience replay (Chaudhry et al., 2019 "On tiny episodic memories"; Riemer et al., 2019)."""

from __future__ import annotations

import torch

from transferkit.continual.base import ContinualStrategy
from transferkit.continual.buffers import ClassBalancedBuffer, ReservoirBuffer
from transferkit.errors import TransferkitError
from transferkit.finetune.base import Batch, check_number

BUFFERS = {"reservoir": ReservoirBuffer, "class_balanced": ClassBalancedBuffer}


def make_buffer(owner: str, size: int, buffer: str, compact: bool = True) -> ReservoirBuffer:
    check_number(owner, "size", size, low=1, integer=True)
    if buffer not in BUFFERS:
        raise TransferkitError(f"{owner}: 'buffer' must be one of {', '.join(BUFFERS)}; got {buffer!r}.")
    return BUFFERS[buffer](size, compact=compact)


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
    """

    name = "er"

    def __init__(self, size: int = 200, batch_size: int | None = None, buffer: str = "reservoir",
                 compact: bool = True) -> None:
        super().__init__()
        if batch_size is not None:
            check_number("er", "batch_size", batch_size, low=1, integer=True)
        self.batch_size = batch_size
        self.buffer = make_buffer("er", size, buffer, compact)

    def prepare_batch(self, batch):
        stream_only(batch)
        if len(self.buffer) == 0:
            return batch
        mem = self.buffer.sample(self.batch_size or len(batch.targets))
        return Batch(torch.cat([batch.x, mem["x"].to(batch.x.dtype)]), torch.cat([batch.targets, mem["y"]]),
                     batch.task, batch.precomputed)

    def after_step(self, model, batch, out):
        self.buffer.add(batch.x, batch.targets)
