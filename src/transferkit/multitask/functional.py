"""Multi-task gradient aggregation as pure functions on the per-task gradient matrix.

``G`` is ``[T, P]``: row ``i`` is task ``i``'s gradient (w.r.t. the shared parameters, or the
shared representation flattened). Each method needs only the ``T x T`` Gram matrix ``K = G G^T``
to find its per-task weights ``w``; the update direction is then ``d = w G`` (one product with
the large matrix). The small problems are solved in float64 on the CPU. Each function returns
``(d, w)``.
"""

from __future__ import annotations

import numpy as np
import torch


def gram(G: torch.Tensor) -> np.ndarray:
    """``K = G G^T`` in float64 on the CPU. Shape: ``[T, P]`` -> ``[T, T]``."""
    return (G @ G.t()).double().cpu().numpy()


def _combine(w: np.ndarray, G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.as_tensor(w, dtype=G.dtype, device=G.device)
    return w @ G, w


def pcgrad_weights(K: np.ndarray, order: list[list[int]]) -> np.ndarray:
    """PCGrad in coefficient form: task ``i``'s projected gradient is ``C[i] G``; for each ``j`` in
    ``order[i]`` with ``C[i] G . g_j < 0`` it loses its component along ``g_j``. Returns ``C [T, T]``."""
    T = len(K)
    C = np.eye(T)
    for i in range(T):
        for j in order[i]:
            if j == i:
                continue
            dot = C[i] @ K[:, j]
            if dot < 0 and K[j, j] > 0:
                C[i, j] -= dot / K[j, j]
    return C


def pcgrad(G: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """PCGrad (Yu et al., 2020, "Gradient surgery for multi-task learning").

    Each task's gradient is projected, in a random order of the other tasks, onto the normal
    plane of every task gradient it conflicts with (negative dot product); the update is the sum
    of the projected gradients.

    Shape:
        G: ``[T, P]``; returns (``d [P]``, the projected gradients ``[T, P]``).
    """
    T = len(G)
    C = pcgrad_weights(gram(G), [torch.randperm(T, generator=generator).tolist() for _ in range(T)])
    projected = torch.as_tensor(C, dtype=G.dtype, device=G.device) @ G
    return projected.sum(0), projected


def min_norm_weights(gram: torch.Tensor | np.ndarray, max_iters: int = 250, epsilon: float = 1e-5) -> torch.Tensor:
    """The point of the simplex minimising ``w^T K w`` for a Gram matrix ``K`` (the min-norm point of
    the convex hull of the gradients), by Frank-Wolfe with exact line search from the uniform
    weights (Sener & Koltun, 2018, Algorithm 2), stopping when the step is below ``epsilon``.
    Two tasks are solved in closed form.

    Shape:
        gram: ``[T, T]``; returns ``w [T]``, ``w >= 0``, ``sum w = 1``.
    """
    K = gram.double().cpu().numpy() if isinstance(gram, torch.Tensor) else np.asarray(gram, dtype=np.float64)
    dtype = gram.dtype if isinstance(gram, torch.Tensor) else torch.float64
    T = len(K)
    if T == 2:
        denom = K[0, 0] + K[1, 1] - 2 * K[0, 1]
        a = float(np.clip((K[1, 1] - K[0, 1]) / denom, 0, 1)) if denom > 0 else 0.5
        return torch.tensor([a, 1 - a], dtype=dtype)
    w = np.full(T, 1.0 / T)
    for _ in range(max_iters if T > 1 else 0):
        t = int(np.argmin(K @ w))
        a, b, c = w @ K[:, t], w @ K @ w, K[t, t]
        gamma = 1.0 if c <= a else 0.0 if b <= a else (b - a) / (b + c - 2 * a)
        w = (1 - gamma) * w
        w[t] += gamma
        if gamma < epsilon:
            break
    return torch.tensor(w, dtype=dtype)


def mgda(G: torch.Tensor, max_iters: int = 250, epsilon: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """MGDA (Sener & Koltun, 2018): the min-norm convex combination of the task gradients, a
    descent direction for every task. With ``G`` taken w.r.t. the shared representation this is
    MGDA-UB (the weights then scale the task losses for one backward pass).

    Shape:
        G: ``[T, P]``; returns (``d [P]``, weights ``[T]`` on the simplex).
    """
    return _combine(min_norm_weights(gram(G), max_iters, epsilon).numpy(), G)


def cagrad_weights(K: np.ndarray, c: float = 0.5, rescale: bool = True) -> np.ndarray:
    """CAGrad's combination weights from the Gram matrix: ``d = g0 + sqrt(phi) / |g_w| g_w`` with
    ``phi = c^2 |g0|^2`` and ``w`` minimising ``g_w . g0 + sqrt(phi) |g_w|`` on the simplex
    (SLSQP on the ``T``-dimensional problem); divided by ``1 + c^2`` when ``rescale``."""
    from scipy.optimize import minimize

    T = len(K)
    scale = np.sqrt(np.diag(K).mean() + 1e-12)
    Kn = K / scale**2  # a well-conditioned problem; the weights do not depend on the scale
    Kb = Kn.mean(1)
    sqrt_phi = c * np.sqrt(max(Kn.mean(), 0.0) + 1e-12)

    def objective(x):
        return float(x @ Kb + sqrt_phi * np.sqrt(max(x @ Kn @ x, 0.0) + 1e-12))

    res = minimize(objective, np.full(T, 1.0 / T), bounds=[(0, 1)] * T, method="SLSQP",
                   constraints={"type": "eq", "fun": lambda x: 1 - x.sum()}, options={"ftol": 1e-12, "maxiter": 500})
    x = np.clip(res.x, 0, None)
    x /= x.sum()
    gw_norm = np.sqrt(max(x @ Kn @ x, 0.0))
    weights = np.full(T, 1.0 / T) + (sqrt_phi / gw_norm * x if gw_norm > 1e-12 else 0.0)
    return weights / (1 + c**2) if rescale else weights


def cagrad(G: torch.Tensor, c: float = 0.5, rescale: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """CAGrad (Liu et al., 2021, "Conflict-averse gradient descent"): the direction within a ball of
    radius ``c |g0|`` around the mean gradient ``g0`` that maximises the worst task's improvement.

    Shape:
        G: ``[T, P]``; returns (``d [P]``, the per-task weights ``[T]``). With ``rescale`` (as in
        the reference implementation) ``d`` is divided by ``1 + c^2``.
    """
    return _combine(cagrad_weights(gram(G), c, rescale), G)


def imtl_g_weights(K: np.ndarray) -> np.ndarray:
    """IMTL-G's weights from the Gram matrix: ``d = w G`` projects equally onto every unit task
    gradient, ``K w = lambda sqrt(diag K)``, so ``w`` is ``pinv(K) sqrt(diag K)`` normalised to sum 1."""
    v = np.linalg.pinv(K) @ np.sqrt(np.clip(np.diag(K), 0, None))
    s = v.sum()
    return v / s if abs(s) > 1e-12 else np.zeros_like(v)


def imtl_g(G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IMTL-G (Liu et al., 2021, "Towards impartial multi-task learning"): weights ``w`` summing to
    one such that the update ``d = w G`` has an equal projection on every task's unit gradient.

    Shape:
        G: ``[T, P]``; returns (``d [P]``, weights ``[T]``).
    """
    return _combine(imtl_g_weights(gram(G)), G)
