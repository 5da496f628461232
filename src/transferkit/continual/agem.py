"""Averaged Gradient Episodic Memory (Chaudhry et al., 2019)."""

from __future__ import annotations

import torch

from transferkit.continual.base import ContinualStrategy, check_heads_of_one_width, forward_by_head, task_loss
from transferkit.continual.functional import agem_project
from transferkit.continual.replay import make_buffer, own_heads
from transferkit.strategy import check_number


class AGEM(ContinualStrategy):
    """Keep an episodic memory of ``size / tasks`` examples per finished task; at each step, if the
    gradient would increase the loss on a memory batch (negative dot product with its gradient),
    project it onto the half-space where it does not. On a stream with one head per task the
    memory examples keep their task's head and the reference gradient goes through it.

    Args:
        size: memory size in examples, shared equally by the stream's tasks.
        batch_size: memory examples for the reference gradient.
    """

    name = "agem"

    def __init__(self, size: int = 200, batch_size: int = 128) -> None:
        super().__init__()
        check_number("agem", "batch_size", batch_size, low=1, integer=True)
        self.batch_size = batch_size
        self.buffer = make_buffer("agem", size, "reservoir")

    def check_stream(self, stream):
        check_heads_of_one_width(self.name, stream)

    def after_backward(self, model, batch):
        if len(self.buffer) == 0:
            return
        # every trainable parameter: with one head per task, an earlier task's head has no gradient
        # from the stream batch (zero) but has one from its memory examples
        params = [p for p in model.parameters() if p.requires_grad]
        mem = self.buffer.sample(self.batch_size)
        loss = task_loss(model, forward_by_head(model, mem["x"], mem.get("head"), batch.task), mem["y"])
        ref = torch.autograd.grad(loss, params, allow_unused=True)
        g = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
        g_ref = torch.cat([(r if r is not None else torch.zeros_like(p)).flatten() for r, p in zip(ref, params)])
        projected = agem_project(g, g_ref)
        if projected is not g:
            offset = 0
            for p in params:
                value = projected[offset:offset + p.numel()].view_as(p)
                if p.grad is None:
                    p.grad = value.clone()
                else:
                    p.grad.copy_(value)
                offset += p.numel()

    def after_task(self, model, task):
        per_task = self.buffer.size // max(getattr(task, "n_experiences", 1), 1)
        idx = torch.randperm(len(task.train))[:per_task].tolist()
        x, y = task.train[idx]
        device = self.buffer.seen.device
        y = torch.as_tensor(y).to(device)
        self.buffer.add(x.to(device), y, **own_heads(model, task, len(y), device))
