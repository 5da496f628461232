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


FISHER_KINDS = ("mammoth", "empirical", "true")


def fisher_diagonal(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, names: list[str],
                    task: str | None = None, kind: str = "mammoth") -> dict[str, torch.Tensor]:
    """Sum over a batch of per-sample Fisher diagonal terms, with ``g_n(c)`` the gradient of
    ``log p(c|x_n)`` for sample ``n`` (Kirkpatrick et al., 2017):

    - ``empirical``: ``g_n(y_n)^2``, the squared gradient of the true label's log-likelihood;
    - ``true``: ``sum_c p(c|x_n) g_n(c)^2``, the expectation over labels drawn from the model
      (one gradient per class: C times the cost);
    - ``mammoth``: ``p(y_n|x_n) g_n(y_n)^2``, the true label's squared gradient weighted by its
      probability, as the online-EWC code of Mammoth (Buzzega et al., 2020, ``models/ewc_on.py``)
      computes it. It is neither of the two Fishers above.

    Divide the sums over all batches by the sample count. Layers that did not run (the head of
    another task) get zero.

    Shape:
        x: ``[N, ...]``; y: ``[N]``; returns ``{name: tensor shaped like the parameter}``.
    """
    if kind not in FISHER_KINDS:
        raise ValueError(f"fisher_diagonal: 'kind' must be one of {', '.join(FISHER_KINDS)}; got {kind!r}.")
    fast = _linear_fisher(model, x, y, names, task, kind)
    return fast if fast is not None else _func_fisher(model, x, y, names, task, kind)


def _labels_and_weights(y: torch.Tensor, probs: torch.Tensor, kind: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(labels whose log-likelihood is differentiated, per-sample weight of the squared gradient)."""
    if kind == "true":
        return [(torch.full_like(y, c), probs[:, c]) for c in range(probs.shape[1])]
    weight = probs.gather(1, y.view(-1, 1)).squeeze(1) if kind == "mammoth" else torch.ones_like(probs[:, 0])
    return [(y, weight)]


def _func_fisher(model, x, y, names, task, kind) -> dict[str, torch.Tensor]:
    """Per-sample gradients of any model, the whole batch at once with ``torch.func``."""
    params = {n: p.detach() for n, p in model.named_parameters() if n in names}
    fixed = {n: p.detach() for n, p in model.named_parameters() if n not in names} | dict(model.named_buffers())

    def log_prob(p, xi, yi):
        out = functional_call(model, fixed | p, (xi.unsqueeze(0),), {"task": task})
        return F.log_softmax(out.logits, dim=-1)[0].gather(0, yi.view(1))[0]

    per_sample = vmap(grad(log_prob), in_dims=(None, 0, 0))
    with torch.no_grad():
        probs = F.softmax(model(x, task=task).logits, dim=-1)
    out = {n: torch.zeros_like(p) for n, p in params.items()}
    for labels, weight in _labels_and_weights(y, probs, kind):
        for n, g in per_sample(params, x, labels).items():
            out[n] += (weight.view(-1, *[1] * (g.dim() - 1)) * g.pow(2)).sum(0)
    return out


def _linear_fisher(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, names: list[str],
                   task: str | None, kind: str = "mammoth") -> dict[str, torch.Tensor] | None:
    """The same sums in one forward pass (and one backward per label considered) when every
    parameter in ``names`` belongs to an ``nn.Linear`` fed ``[B, D]`` inputs: the per-sample weight
    gradient is ``delta_n a_n^T``, so ``sum_n w_n (delta_n a_n^T)^2 = (w * delta^2)^T a^2`` and no
    per-sample gradient is formed. Returns None when the model does not have that form (the
    caller falls back to ``torch.func``)."""
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
            log_p = F.log_softmax(model(x, task=task).logits, dim=-1)
            fired = [n for n in used if n in inputs]  # another task's head never runs
            if any(inputs[n].dim() != 2 for n in fired):
                return None
            d2 = {n: torch.zeros_like(outputs[n]) for n in fired}
            pairs = _labels_and_weights(y, log_p.detach().exp(), kind) if fired else []
            for i, (labels, weight) in enumerate(pairs):
                lp = log_p.gather(1, labels.view(-1, 1)).sum()
                deltas = torch.autograd.grad(lp, [outputs[n] for n in fired], retain_graph=i < len(pairs) - 1,
                                             allow_unused=True)
                for n, d in zip(fired, deltas):
                    if d is not None:
                        d2[n] += weight.unsqueeze(1) * d.pow(2)
    finally:
        for h in hooks:
            h.remove()
    params = dict(model.named_parameters())
    out = {}
    for n in names:
        layer, what = owner[n], n.rsplit(".", 1)[1]
        if layer not in d2:
            out[n] = torch.zeros_like(params[n])
        else:
            out[n] = d2[layer].t() @ inputs[layer].detach().pow(2) if what == "weight" else d2[layer].sum(0)
    return out


def si_importance(path_integral: dict[str, torch.Tensor], start: dict[str, torch.Tensor],
                  end: dict[str, torch.Tensor], damping: float,
                  previous: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Synaptic Intelligence's importance after a task (Zenke et al., 2017, eq. 5):
    ``Omega = max(0, Omega_previous + omega / ((end - start)^2 + xi))``.

    ``path_integral`` (omega) is the running sum of ``-g * delta_theta`` over the task's steps. It
    is negative where a step moved a weight along its gradient (momentum, adaptive rates, weight
    decay, a penalty's pull); the importance is clamped at zero as in the authors' code
    (ganguli-lab/pathint, ``protocols.py``: ``relu`` of the accumulated Omega), so the penalty
    never rewards moving away from the anchor.
    """
    out = {}
    for n, omega in path_integral.items():
        value = omega / ((end[n] - start[n]).pow(2) + damping)
        if previous is not None and n in previous:
            value = previous[n] + value
        out[n] = value.clamp_min(0.0)
    return out


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
