"""Experience replay (Chaudhry et al., 2019 "On tiny episodic memories"; Riemer et al., 2019)."""

from __future__ import annotations

import torch

from transferkit.continual.base import (ContinualStrategy, check_heads_of_one_width, head_index, logits_by_head,
                                       task_loss)
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


def refill(buffer: ReservoirBuffer, new: dict[str, torch.Tensor], key: str | tuple[str, ...]) -> ReservoirBuffer:
    """The memory after a task when it is filled at task ends: the stored items plus the task's,
    cut to an equal random share per value of ``key`` (``"y"``: per class; ``"task"``: per task;
    ``("head", "y")``: per class of each task of a multi-head stream)."""
    old = buffer.all() if len(buffer) else {k: v[:0] for k, v in new.items()}
    device = buffer.seen.device
    items = {k: torch.cat([old[k].to(device), new[k].to(device)]) for k in new}
    keys = (key,) if isinstance(key, str) else key
    groups = torch.unique(torch.stack([items[k] for k in keys], 1), dim=0, return_inverse=True)[1]
    quota = buffer.size // int(groups.max() + 1)
    keep = balanced_subset(groups, quota).to(device)
    fresh = type(buffer)(buffer.size, buffer.compact).to(device)
    fresh.add(items["x"][keep], items["y"][keep], **{k: v[keep] for k, v in items.items() if k not in ("x", "y")})
    return fresh


def check_buffer_fits(owner: str, buffer: ReservoirBuffer, stream) -> None:
    """A class-balanced memory needs class labels; a stream of multi-hot rows or values has none."""
    if isinstance(buffer, ClassBalancedBuffer) and stream.task != "classification":
        raise TransferkitError(f"{owner}: a class_balanced buffer balances class labels, but stream '{stream.name}' "
                               f"holds {stream.task} targets; set buffer to reservoir.")


def task_data(task, device) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = task.train[list(range(len(task.train)))]
    return x.to(device), torch.as_tensor(y).to(device)


def with_replay(batch: Batch, buffer: ReservoirBuffer, n: int | None) -> Batch:
    """The stream batch with ``n`` (default: as many) stored examples appended."""
    return replay_batch(batch, buffer, n)[0]


def replay_batch(batch: Batch, buffer: ReservoirBuffer, n: int | None) -> tuple[Batch, dict | None]:
    """(the stream batch with ``n`` stored examples appended, those examples; None if the memory is empty)."""
    stream_only(batch)
    if len(buffer) == 0:
        return batch, None
    mem = buffer.sample(n or len(batch.targets))
    return Batch(torch.cat([batch.x, mem["x"].to(batch.x.dtype)]), torch.cat([batch.targets, mem["y"]]),
                 batch.task, batch.precomputed), mem


def own_heads(model, task, n: int, device) -> dict[str, torch.Tensor]:
    """``{"head": [n] positions of the task's head}`` to store beside the samples of a multi-head
    stream's task (a head name or an experience); ``{}`` when the stream has one head."""
    head = task if task is None or isinstance(task, str) else getattr(task, "head", None)
    if head is None:
        return {}
    return {"head": torch.full((n,), head_index(model, head), dtype=torch.long, device=device)}


def row_heads(model, batch: Batch, replayed: torch.Tensor | None) -> torch.Tensor:
    """The head of every row of a mixed batch: the stream rows' task head, then the replayed rows' own."""
    n_stream = len(batch.targets) - (0 if replayed is None else len(replayed))
    own = torch.full((n_stream,), head_index(model, batch.task), dtype=torch.long, device=batch.targets.device)
    return own if replayed is None else torch.cat([own, replayed.to(own.device)])


def stream_only(batch: Batch) -> None:
    if not isinstance(batch.x, torch.Tensor):
        raise TransferkitError("Replay stores tensors; for text, train on cached features (a frozen encoder) "
                               "or use a regularisation strategy such as lwf or ewc.")


class ER(ContinualStrategy):
    """Experience replay: every step trains on the stream batch plus ``batch_size`` examples drawn
    from a memory of at most ``size`` past examples; each stream batch is then offered to the memory.

    On a stream with one head per task each stored example keeps its task's head, and the loss is
    the cross-entropy of every example of the mixed batch through its own head (the mean over the
    batch, as with one head).

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
        self.multi_head = False  # set per task: the stream has one head per task

    def check_stream(self, stream):
        check_heads_of_one_width(self.name, stream)
        check_buffer_fits(self.name, self.buffer, stream)

    def before_task(self, model, task):
        self.multi_head = getattr(task, "head", None) is not None

    def prepare_batch(self, batch):
        mixed, mem = replay_batch(batch, self.buffer, self.batch_size)
        self.__dict__["_replayed_heads"] = mem["head"] if self.multi_head and mem is not None else None
        return mixed

    def task_weight(self):
        return 0.0 if self.multi_head else 1.0  # one head per task: loss_terms gives each row its own head

    def loss_terms(self, batch, out, model):
        if not self.multi_head:
            return {}
        heads = row_heads(model, batch, self.__dict__.get("_replayed_heads"))
        return {"task": task_loss(model, logits_by_head(model, out.features, heads), batch.targets)}

    def after_step(self, model, batch, out):
        if self.fill == "online":
            heads = own_heads(model, batch.task, len(batch.targets), batch.targets.device)
            self.buffer.add(batch.x, batch.targets, **heads)

    def after_task(self, model, task):
        if self.fill == "task_end":
            x, y = task_data(task, self.buffer.seen.device)
            index = torch.full((len(y),), task.index, dtype=torch.long, device=y.device)
            items = {"x": x, "y": y, "task": index} | own_heads(model, task, len(y), y.device)
            self.buffer = refill(self.buffer, items, "task")
