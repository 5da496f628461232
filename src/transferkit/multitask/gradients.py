"""Per-task gradients without a Python loop of backward passes, and the aggregated backward.

The per-task gradients of the shared parameters are the rows of the Jacobian of the stacked
task losses: one *batched* backward pass (``is_grads_batched``, vmapped by autograd) with the
T unit vectors as output gradients. MGDA-UB needs only ``dL_t/dz`` for the shared representation
``z``, which costs a backward through each task's head alone.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def representation_gradients(losses: list[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """``dL_t/dz`` for every task. Shape: returns ``[T, *z.shape]``."""
    return torch.stack([torch.autograd.grad(L, z, retain_graph=True)[0] for L in losses])


def shared_gradients(losses: list[torch.Tensor], shared: list[torch.Tensor]) -> torch.Tensor:
    """The per-task gradients of the shared parameters, as a matrix ``G [T, P]``."""
    L = torch.stack(list(losses))
    T = len(L)
    eye = torch.eye(T, dtype=L.dtype, device=L.device)
    J = torch.autograd.grad(L, shared, grad_outputs=eye, is_grads_batched=True, retain_graph=True, allow_unused=True)
    return torch.cat([(j if j is not None else torch.zeros(T, *p.shape, device=L.device)).reshape(T, -1)
                      for j, p in zip(J, shared)], dim=1)


def aggregated_backward(losses: list[torch.Tensor], shared: list[torch.Tensor], specific: list[torch.Tensor],
                        aggregate: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Set ``.grad`` of the shared parameters to ``aggregate(G)``'s direction and of the
    task-specific ones to the gradient of the summed losses (each head sees only its own task).
    Returns the per-task weights the aggregator reports and the gradient matrix ``G``."""
    G = shared_gradients(losses, shared)
    d, weights = aggregate(G)
    offset = 0
    for p in shared:
        n = p.numel()
        g = d[offset:offset + n].view_as(p)
        p.grad = g.clone() if p.grad is None else p.grad + g
        offset += n
    if specific:
        grads = torch.autograd.grad(sum(losses), specific, allow_unused=True)
        for p, g in zip(specific, grads):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g
    return weights, G
