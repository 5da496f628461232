"""Per-task gradients without a Python loop of backward passes, and the aggregated backward.

The per-task gradients of the shared parameters are the rows of the Jacobian of the stacked
task losses: one *batched* backward pass (``is_grads_batched``, vmapped by autograd) with the
T unit vectors as output gradients. The aggregation methods need only the Gram matrix
``K = G G^T``, summed parameter by parameter, and the update ``sum_t w_t g_t`` is formed
parameter by parameter too: ``G`` is never concatenated. MGDA-UB needs only ``dL_t/dz`` for the shared representation
``z``, which costs a backward through each task's head alone.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

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


def _gram(J: list[torch.Tensor]) -> torch.Tensor:
    """``G G^T`` summed parameter by parameter (``G`` itself is never concatenated)."""
    T = len(J[0])
    K = torch.zeros(T, T, dtype=torch.float64, device=J[0].device)
    for j in J:
        j = j.reshape(T, -1)
        K += (j @ j.t()).double()
    return K


def shared_gram(losses: list[torch.Tensor], shared: list[torch.Tensor]) -> torch.Tensor:
    """The Gram matrix ``K [T, T]`` of the per-task gradients of the shared parameters (graph kept)."""
    return _gram(_jacobian(losses, shared, retain_graph=True))


def aggregated_backward(losses: list[torch.Tensor], shared: list[torch.Tensor], specific: list[torch.Tensor],
                        weigh: Callable[[np.ndarray], np.ndarray], retain_graph: bool = False,
                        reduce: Callable[[list[torch.Tensor]], list[torch.Tensor]] | None = None
                        ) -> tuple[np.ndarray, torch.Tensor]:
    """Set ``.grad`` of the shared parameters to ``sum_t w_t g_t`` with the weights ``w = weigh(K)``
    from the Gram matrix ``K = G G^T`` of the per-task gradients, and of the task-specific ones to
    the gradient of the summed losses (each head sees only its own task): one batched backward for
    the shared Jacobian and one backward through the heads alone. Returns ``w`` and ``K``.

    ``reduce`` (several processes: ``Step.reduce``) turns each process's gradients into the whole
    batch's before ``K`` is formed, so every process aggregates the same per-task gradients."""
    J = _jacobian(losses, shared, retain_graph=retain_graph or bool(specific))
    if reduce is not None:
        J = reduce(J)
    K = _gram(J)
    w = np.asarray(weigh(K.cpu().numpy()), dtype=np.float64)
    wt = torch.as_tensor(w, dtype=J[0].dtype, device=J[0].device)
    for p, j in zip(shared, J):
        g = torch.tensordot(wt, j, dims=1)
        p.grad = g if p.grad is None else p.grad + g
    if specific:  # a backward through the heads alone (each head's gradient comes from its own task)
        grads = torch.autograd.grad(sum(losses), specific, retain_graph=retain_graph, allow_unused=True)
        if reduce is not None:  # every process sets the same gradients; a head no process used keeps None
            used = reduce([torch.tensor([float(g is not None) for g in grads])])[0] > 0
            grads = reduce([g if g is not None else torch.zeros_like(p) for p, g in zip(specific, grads)])
            grads = [g if u else None for g, u in zip(grads, used.tolist())]
        for p, g in zip(specific, grads):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g
    return w, K
