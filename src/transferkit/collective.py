"""Collective operations across the processes of a run (DDP), each the identity in one process.

A run under N processes gives each process a contiguous share of every batch (the trainer's
``ShardedBatches``: ``tensor_split`` of the batch's rows). Terms that compare statistics of a whole
batch (CORAL's covariances, MMD's kernel means, a domain discriminator's batch) are computed on the
rows of every process, gathered in process order, so each process computes the term of the whole
batch; ``gather_rows`` is differentiable, and its backward sums the processes' gradients of the
rows, which DDP's average of the parameter gradients then divides out again.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def processes() -> int:
    """The number of processes of this run's process group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's place in the group (0 without one)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def total(count: int, device: torch.device | str = "cpu") -> int:
    """``count`` summed over the processes."""
    if processes() == 1:
        return count
    t = torch.tensor(count, dtype=torch.long, device=device)
    dist.all_reduce(t)
    return int(t)


def share(rows: torch.Tensor) -> torch.Tensor:
    """This process's share of ``rows`` (the same rows in every process): the part of ``tensor_split``
    that the trainer's sharding gives it of a batch of that length."""
    n = processes()
    return rows if n == 1 else rows.tensor_split(n)[rank()]


class _GatherRows(torch.autograd.Function):
    """All processes' rows (padded to the longest share for ``all_gather``), in process order. The
    gradient of this process's rows is the sum over the processes of their gradients of them."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, counts: list[int]):
        ctx.counts, ctx.rank = counts, rank()
        longest = max(counts)
        padded = x.new_zeros((longest, *x.shape[1:]))
        padded[:len(x)] = x
        parts = [torch.empty_like(padded) for _ in counts]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([p[:c] for p, c in zip(parts, counts)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # every process's gradient of every row, summed
        start = sum(ctx.counts[:ctx.rank])
        return grad[start:start + ctx.counts[ctx.rank]], None


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """The rows of ``x`` from every process, concatenated in process order (differentiable)."""
    n = processes()
    if n == 1:
        return x
    counts = [torch.zeros((), dtype=torch.long, device=x.device) for _ in range(n)]
    dist.all_gather(counts, torch.tensor(len(x), dtype=torch.long, device=x.device))
    return _GatherRows.apply(x, [int(c) for c in counts])


def mean_over_processes(tensors: list[torch.Tensor], weight: float = 1.0) -> list[torch.Tensor]:
    """``sum_r weight_r * t_r / N`` for each tensor (one all-reduce for all of them): with ``weight``
    the trainer's share factor (``N x`` this process's share of the batch's rows), the whole batch's
    value of a mean over rows."""
    n = processes()
    if n == 1:
        return [t * weight if weight != 1.0 else t for t in tensors]
    flat = torch.cat([t.reshape(-1) for t in tensors]) * (weight / n)
    dist.all_reduce(flat)
    return [part.view_as(t) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors)]


def average_gradients(params) -> None:
    """Set each parameter's ``.grad`` to its mean over the processes (one all-reduce), for parameters
    DDP does not reduce (a strategy's own modules, or gradients a strategy sets itself)."""
    params = [p for p in params if p.grad is not None]
    if processes() == 1 or not params:
        return
    for p, g in zip(params, mean_over_processes([p.grad for p in params])):
        p.grad = g
