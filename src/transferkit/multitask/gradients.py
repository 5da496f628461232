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


def _jacobian(losses: list[torch.Tensor], params: list[torch.Tensor], retain_graph: bool) -> list[torch.Tensor]:
    """Per parameter, the stacked per-task gradients ``[T, *p.shape]`` (zeros where a task does not
    reach it), from one batched backward with the T unit vectors as output gradients."""
    L = torch.stack(list(losses))
    T = len(L)
    eye = torch.eye(T, dtype=L.dtype, device=L.device)
    J = torch.autograd.grad(L, params, grad_outputs=eye, is_grads_batched=True, retain_graph=retain_graph,
                            allow_unused=True)
    return [j if j is not None else torch.zeros(T, *p.shape, device=L.device, dtype=p.dtype) for j, p in zip(J, params)]


def shared_gradients(losses: list[torch.Tensor], shared: list[torch.Tensor]) -> torch.Tensor:
    """The per-task gradients of the shared parameters, as a matrix ``G [T, P]`` (the graph is kept)."""
    return torch.cat([j.reshape(len(losses), -1) for j in _jacobian(losses, shared, retain_graph=True)], dim=1)


def aggregated_backward(losses: list[torch.Tensor], shared: list[torch.Tensor], specific: list[torch.Tensor],
                        aggregate: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                        retain_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Set ``.grad`` of the shared parameters to ``aggregate(G)``'s direction and of the
    task-specific ones to the gradient of the summed losses (each head sees only its own task),
    all from one batched backward. Returns the per-task weights the aggregator reports and ``G``."""
    J = _jacobian(losses, [*shared, *specific], retain_graph)
    G = torch.cat([j.reshape(len(losses), -1) for j in J[:len(shared)]], dim=1)
    d, weights = aggregate(G)
    offset = 0
    for p in shared:
        n = p.numel()
        g = d[offset:offset + n].view_as(p)
        p.grad = g.clone() if p.grad is None else p.grad + g
        offset += n
    for p, j in zip(specific, J[len(shared):]):
        g = j.sum(0)
        p.grad = g if p.grad is None else p.grad + g
    return weights, G
