"""The maths of continual learning as pure functions (tensors in, tensors out)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from transferkit.finetune.functional import kd_loss  # noqa: F401  (LwF's distillation term; re-exported)


def quadratic_penalty(params: dict[str, torch.Tensor], anchors: dict[str, torch.Tensor],
                      importance: dict[str, torch.Tensor]) -> torch.Tensor:
    """``sum_i importance_i * (theta_i - anchor_i)^2`` over every named parameter in ``anchors``.

    The EWC penalty (Kirkpatrick et al., 2017) with the Fisher diagonal as importance, and SI's
    surrogate loss (Zenke et al., 2017) with the path-integral importance. It is added to the task
    loss (times a weight), never to the network's output. Zero at the anchor.
    """
    total = next(iter(params.values())).new_zeros(())
    for name, anchor in anchors.items():
        total = total + (importance[name] * (params[name] - anchor).pow(2)).sum()
    return total


def fisher_diagonal(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, names: list[str],
                    task: str | None = None) -> dict[str, torch.Tensor]:
    """Sum over a batch of the empirical Fisher diagonal terms ``p(y_n|x_n) * g_n^2``, with ``g_n``
    the gradient of ``log p(y_n|x_n)`` for each sample (the whole batch at once with ``torch.func``).

    Weighting each squared per-sample gradient by the model's probability of the true label
    follows the online-EWC reference implementation of Buzzega et al. (2020). Divide the sums
    over all batches by the sample count.

    Shape:
        x: ``[N, ...]``; y: ``[N]``; returns ``{name: tensor shaped like the parameter}``.
    """
    fast = _linear_fisher(model, x, y, names, task)
    if fast is not None:
        return fast
    params = {n: p.detach() for n, p in model.named_parameters() if n in names}
    fixed = {n: p.detach() for n, p in model.named_parameters() if n not in names} | dict(model.named_buffers())

    def log_prob(p, xi, yi):
        out = functional_call(model, fixed | p, (xi.unsqueeze(0),), {"task": task})
        lp = F.log_softmax(out.logits, dim=-1)[0].gather(0, yi.view(1))[0]
        return lp, lp.detach().exp()

    grads, probs = vmap(grad(log_prob, has_aux=True), in_dims=(None, 0, 0))(params, x, y)
    return {n: (probs.view(-1, *[1] * (g.dim() - 1)) * g.pow(2)).sum(0) for n, g in grads.items()}


def _linear_fisher(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, names: list[str],
                   task: str | None) -> dict[str, torch.Tensor] | None:
    """The same sums in one forward/backward pass when every parameter in ``names`` belongs to an
    ``nn.Linear`` fed ``[B, D]`` inputs: the per-sample weight gradient is ``delta_n a_n^T``, so
    ``sum_n p_n (delta_n a_n^T)^2 = (p * delta^2)^T a^2`` and no per-sample gradient is formed.
    Returns None when the model does not have that form (the caller falls back to ``torch.func``)."""
    layers = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    owner = {f"{n}.{k}": n for n, m in layers.items() for k, _ in m.named_parameters(recurse=False)}
    if not all(n in owner for n in names):
        return None
    used = {owner[n] for n in names}
    inputs, outputs = {}, {}

    def keep(name):
        def hook(module, inp, out):
            inputs[name], outputs[name] = inp[0], out
        return hook

    hooks = [layers[n].register_forward_hook(keep(n)) for n in used]
    try:
        with torch.enable_grad():
            logits = model(x, task=task).logits
            lp = F.log_softmax(logits, dim=-1).gather(1, y.view(-1, 1)).squeeze(1)
            if any(inputs[n].dim() != 2 for n in used):
                return None
            deltas = dict(zip(used, torch.autograd.grad(lp.sum(), [outputs[n] for n in used], allow_unused=True)))
    finally:
        for h in hooks:
            h.remove()
    p = lp.detach().exp().unsqueeze(1)
    out = {}
    for n in names:
        layer, kind = owner[n], n.rsplit(".", 1)[1]
        d2 = deltas[layer].pow(2) * p if deltas[layer] is not None else torch.zeros_like(outputs[layer])
        out[n] = d2.t() @ inputs[layer].detach().pow(2) if kind == "weight" else d2.sum(0)
    return out


def si_importance(path_integral: dict[str, torch.Tensor], start: dict[str, torch.Tensor],
                  end: dict[str, torch.Tensor], damping: float) -> dict[str, torch.Tensor]:
    """Synaptic Intelligence's per-task importance ``omega / ((end - start)^2 + xi)`` (Zenke et al., 2017).

    ``path_integral`` is the running sum of ``-g * delta_theta`` over the task's steps.
    """
    return {n: path_integral[n] / ((end[n] - start[n]).pow(2) + damping) for n in path_integral}


def agem_project(g: torch.Tensor, g_ref: torch.Tensor) -> torch.Tensor:
    """A-GEM (Chaudhry et al., 2019): if ``g`` points against the memory gradient ``g_ref``
    (negative dot product), remove that component: ``g - (g.g_ref / g_ref.g_ref) g_ref``.

    Shape:
        g, g_ref: ``[P]`` flattened gradients; returns ``[P]``.
    """
    dot = torch.dot(g, g_ref)
    if dot >= 0:
        return g
    return g - dot / torch.dot(g_ref, g_ref).clamp_min(1e-12) * g_ref


def herding(features: torch.Tensor, m: int) -> torch.Tensor:
    """iCaRL's herding (Rebuffi et al., 2017): indices of ``m`` samples whose running mean best
    approximates the mean of the (L2-normalised) ``features``, chosen greedily.

    Shape:
        features: ``[N, D]``; returns ``[min(m, N)]`` indices, no repeats.
    """
    f = F.normalize(features, dim=1)
    mu = f.mean(0)
    chosen: list[int] = []
    running = torch.zeros_like(mu)
    available = torch.ones(len(f), dtype=torch.bool)
    for k in range(1, min(m, len(f)) + 1):
        dist = (mu - (running + f) / k).norm(dim=1)
        dist[~available] = float("inf")
        i = int(dist.argmin())
        chosen.append(i)
        available[i] = False
        running += f[i]
    return torch.tensor(chosen, dtype=torch.long)


def nearest_mean_scores(features: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """Scores of the nearest-mean-of-exemplars classifier: minus the distance of each normalised
    feature to each normalised class mean (higher is nearer).

    Shape:
        features: ``[B, D]``; means: ``[C, D]``; returns ``[B, C]``.
    """
    return -torch.cdist(F.normalize(features, dim=1), F.normalize(means, dim=1))
