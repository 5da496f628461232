"""Dark Experience Replay, DER and DER++ (Buzzega et al., 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from transferkit.continual.base import ContinualStrategy, check_heads_of_one_width, forward_by_head, task_loss
from transferkit.continual.replay import check_buffer_fits, check_fill, make_buffer, own_heads, refill, stream_only, task_data
from transferkit.strategy import check_number


class DER(ContinualStrategy):
    """Replay past examples with the logits the network gave them when they were seen, and match
    them: ``weight * MSE(f(x_mem), z_mem)``. DER++ adds ``replay_weight * CE(f(x'_mem), y'_mem)`` on
    a second memory batch. The memory is a reservoir sample of the stream.

    Args:
        size: memory size in examples.
        weight: multiplier of the logit-matching term (alpha).
        replay_weight: multiplier of the label term (beta; 0 gives DER).
        batch_size: memory examples per term (None: as many as the stream batch).
        buffer: ``reservoir`` or ``class_balanced``.
        fill: ``online`` (the paper: every stream batch is offered with its logits of that moment)
            or ``task_end`` (after each task, an equal share per class with the logits of the
            task's final model, as Avalanche's DER).
        single_batch: one memory batch serves both terms (as Avalanche's DER); the paper draws two.

    On a stream with one head per task each stored example keeps its task's head and is replayed
    through it.
    """

    name = "der"

    def __init__(self, size: int = 200, weight: float = 0.3, replay_weight: float = 0.0,
                 batch_size: int | None = None, buffer: str = "reservoir", fill: str = "online",
                 single_batch: bool = False) -> None:
        super().__init__()
        check_number(self.name, "weight", weight, low=0.0)
        check_number(self.name, "replay_weight", replay_weight, low=0.0)
        if batch_size is not None:
            check_number(self.name, "batch_size", batch_size, low=1, integer=True)
        self.weight, self.replay_weight, self.batch_size = float(weight), float(replay_weight), batch_size
        self.buffer = make_buffer(self.name, size, buffer)
        self.fill, self.single_batch = check_fill(self.name, fill), bool(single_batch)

    def check_stream(self, stream):
        check_heads_of_one_width(self.name, stream)
        check_buffer_fits(self.name, self.buffer, stream)

    def loss_terms(self, batch, out, model):
        stream_only(batch)
        if len(self.buffer) == 0:
            return {}
        n = self.batch_size or len(batch.targets)
        mem = self.buffer.sample(n)
        logits = forward_by_head(model, mem["x"], mem.get("head"), batch.task)
        terms = {"logits": self.weight * F.mse_loss(logits, mem["logits"])}
        if self.replay_weight:
            if not self.single_batch:
                mem = self.buffer.sample(n)
                logits = forward_by_head(model, mem["x"], mem.get("head"), batch.task)
            terms["replay"] = self.replay_weight * task_loss(model, logits, mem["y"])
        return terms

    def after_step(self, model, batch, out):
        if self.fill == "online":
            n = len(batch.targets)
            self.buffer.add(batch.x, batch.targets, logits=out.logits[:n].detach(),
                            **own_heads(model, batch.task, n, batch.targets.device))

    @torch.no_grad()
    def after_task(self, model, task):
        if self.fill == "task_end":
            x, y = task_data(task, self.buffer.seen.device)
            was_training = model.training
            logits = torch.cat([model.eval()(x[a:a + 1024], task=task.head).logits for a in range(0, len(x), 1024)])
            model.train(was_training)
            items = {"x": x, "y": y, "logits": logits} | own_heads(model, task, len(y), y.device)
            if y.is_floating_point():  # multi-hot rows or values have no class: an equal share per task
                items["task"] = torch.full((len(y),), task.index, dtype=torch.long, device=y.device)
            key = "task" if "task" in items else ("head", "y") if "head" in items else "y"
            self.buffer = refill(self.buffer, items, key)


class DERpp(DER):
    """DER++: DER plus a cross-entropy term on replayed labels."""

    name = "derpp"

    def __init__(self, size: int = 200, weight: float = 0.1, replay_weight: float = 0.5,
                 batch_size: int | None = None, buffer: str = "reservoir", fill: str = "online",
                 single_batch: bool = False) -> None:
        super().__init__(size, weight, replay_weight, batch_size, buffer, fill, single_batch)
