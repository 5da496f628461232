"""Multi-task gradient aggregation as pure functions on the per-task gradient matrix.

``G`` is ``[T, P]``: row ``i`` is task ``i``'s gradient (w.r.t. the shared parameters, or the
shared representation flattened). Each function returns the update direction ``d`` (``[P]``) and
the per-task weights it amounts to where the method defines them.
"""

from __future__ import annotations

import numpy as np
import torch


def pcgrad(G: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """PCGrad (Yu et al., 2020, "Gradient surgery for multi-task learning").

    Each task's gradient is projected, in a random order of the other tasks, onto the normal
    plane of every task gradient it conflicts with (negative dot product); the update is the sum
    of the projected gradients.

    Shape:
        G: ``[T, P]``; returns (``d [P]``, the projected gradients ``[T, P]``).
    """
    T = len(G)
    projected = G.clone()
    for i in range(T):
        others = [j for j in torch.randperm(T, generator=generator).tolist() if j != i]
        for j in others:
            dot = projected[i] @ G[j]
            if dot < 0:
                projected[i] -= dot / G[j].dot(G[j]).clamp_min(1e-20) * G[j]
    return projected.sum(0), projected


def min_norm_weights(gram: torch.Tensor, iters: int = 250, tol: float = 1e-7) -> torch.Tensor:
    """The point of the simplex minimising ``w^T K w`` for a Gram matrix ``K`` (the min-norm point of
    the convex hull of the gradients): exact for two tasks, Frank-Wolfe otherwise (Sener & Koltun, 2018).

    Shape:
        gram: ``[T, T]``; returns ``w [T]``, ``w >= 0``, ``sum w = 1``.
    """
    K = gram.double()
    T = len(K)
    if T == 1:
        return torch.ones(1, dtype=gram.dtype)
    if T == 2:
        denom = K[0, 0] + K[1, 1] - 2 * K[0, 1]
        a = ((K[1, 1] - K[0, 1]) / denom).clamp(0, 1) if denom > 0 else torch.tensor(0.5, dtype=K.dtype)
        return torch.stack([a, 1 - a]).to(gram.dtype)
    w = torch.full((T,), 1.0 / T, dtype=K.dtype)
    for _ in range(iters):
        grad = K @ w
        t = int(grad.argmin())
        e = torch.zeros_like(w)
        e[t] = 1.0
        # exact line search between w and the vertex e_t
        d = e - w
        denom = d @ K @ d
        if denom <= 0:
            break
        step = float((-(w @ K @ d) / denom).clamp(0, 1))
        if step < tol:
            break
        w = w + step * d
    return w.to(gram.dtype)


def mgda(G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MGDA (Sener & Koltun, 2018): the min-norm convex combination of the task gradients, a
    descent direction for every task. With ``G`` taken w.r.t. the shared representation this is
    MGDA-UB (the weights then scale the task losses for one backward pass).

    Shape:
        G: ``[T, P]``; returns (``d [P]``, weights ``[T]`` on the simplex).
    """
    w = min_norm_weights(G @ G.t())
    return w @ G, w


def cagrad(G: torch.Tensor, c: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """CAGrad (Liu et al., 2021, "Conflict-averse gradient descent"): the direction within a ball of
    radius ``c * |g0|`` around the mean gradient ``g0`` that maximises the worst task's improvement,
    ``d = g0 + sqrt(phi) / |g_w| * g_w`` with ``w`` minimising ``g_w . g0 + sqrt(phi) |g_w|`` on the simplex.

    Shape:
        G: ``[T, P]``; returns (``d [P]``, the simplex weights ``w [T]``). ``d`` is scaled by
        ``1 / (1 + c^2)`` as in the reference implementation.
    """
    from scipy.optimize import minimize

    T = len(G)
    GG = (G @ G.t()).double().cpu().numpy()
    scale = np.sqrt(np.diag(GG).mean() + 1e-8)
    GG = GG / scale**2
    g0_norm = np.sqrt(GG.mean() + 1e-8)
    phi = c * g0_norm
    Gb = GG.mean(1, keepdims=True)

    def objective(x):
        x = x.reshape(T, 1)
        return float((x.T @ Gb + phi * np.sqrt(x.T @ GG @ x + 1e-8)).item())

    x0 = np.full(T, 1.0 / T)
    res = minimize(objective, x0, bounds=[(0, 1)] * T,
                   constraints={"type": "eq", "fun": lambda x: 1 - x.sum()}, method="SLSQP")
    w = torch.tensor(res.x, dtype=G.dtype, device=G.device)
    gw = w @ G
    g0 = G.mean(0)
    gw_norm = gw.norm().clamp_min(1e-12)
    lam = phi * scale / gw_norm  # phi was computed on the rescaled Gram matrix
    return (g0 + lam * gw) / (1 + c**2), w


def imtl_g(G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IMTL-G (Liu et al., 2021, "Towards impartial multi-task learning"): weights ``a`` summing to
    one such that the update ``d = sum_i a_i g_i`` has an equal projection on every task's unit
    gradient ``u_i``: ``a_{2..T} = g_1 U^T (D U^T)^{-1}`` with ``D_i = g_1 - g_i``, ``U_i = u_1 - u_i``.

    Shape:
        G: ``[T, P]``; returns (``d [P]``, weights ``[T]``).
    """
    U = G / G.norm(dim=1, keepdim=True).clamp_min(1e-12)
    D = G[:1] - G[1:]
    Ud = U[:1] - U[1:]
    rest = G[0] @ Ud.t() @ torch.linalg.pinv(D @ Ud.t())
    w = torch.cat([(1 - rest.sum()).view(1), rest])
    return w @ G, w
