"""Loss weighters: turn the per-task losses into one loss to minimise.

A weighter is a small ``nn.Module`` (its learnable weights move to the device and are
checkpointed) whose ``forward(losses)`` returns ``(total, {task: weight})``. Gradient-based
aggregators (PCGrad, MGDA, CAGrad, IMTL-G) live in ``multitask.functional`` and act on per-task
gradients instead.
"""

from __future__ import annotations

import torch
from torch import nn

from transferkit.errors import TransferkitError
from transferkit.finetune.base import check_number
from transferkit.registry import Registry


def _stack(losses: dict[str, torch.Tensor]) -> torch.Tensor:
    if not losses:
        raise TransferkitError("A weighter needs at least one task loss.")
    return torch.stack([losses[k] for k in losses])


def _weights(names, values: torch.Tensor) -> dict[str, float]:
    return {k: float(v) for k, v in zip(names, values.detach())}


class Equal(nn.Module):
    """The plain sum of the task losses (every weight 1)."""

    name = "equal"

    def forward(self, losses: dict[str, torch.Tensor]):
        L = _stack(losses)
        return L.sum(), _weights(losses, torch.ones(len(L)))


class Fixed(nn.Module):
    """Constant weights given per task: ``{"left": 1.0, "right": 0.5}``."""

    name = "fixed"

    def __init__(self, weights: dict[str, float]) -> None:
        super().__init__()
        if not isinstance(weights, dict) or not weights:
            raise TransferkitError("fixed: 'weights' must map each task name to a number; got "
                                   f"{weights!r}.")
        for k, v in weights.items():
            check_number("fixed", f"weights.{k}", v, low=0.0)
        self.weights = dict(weights)

    def forward(self, losses):
        missing = [k for k in losses if k not in self.weights]
        if missing:
            raise TransferkitError(f"fixed: no weight for task(s) {', '.join(missing)}; add them to 'weights'.")
        w = torch.tensor([self.weights[k] for k in losses], device=next(iter(losses.values())).device)
        return (w * _stack(losses)).sum(), _weights(losses, w)


class Uncertainty(nn.Module):
    """Homoscedastic uncertainty weighting (Kendall et al., 2018): learn ``s_i = log sigma_i^2`` and
    minimise ``sum_i exp(-s_i) L_i + s_i``; a task with a higher loss gets a higher ``s_i`` and so a
    smaller weight ``exp(-s_i)``. The ``s_i`` train with the model (they are parameters)."""

    name = "uncertainty"

    def __init__(self, tasks: list[str]) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.log_vars = nn.Parameter(torch.zeros(len(self.tasks)))

    def forward(self, losses):
        L = _stack({k: losses[k] for k in self.tasks})
        w = torch.exp(-self.log_vars)
        return (w * L + self.log_vars).sum(), _weights(self.tasks, w)


class RandomWeights(nn.Module):
    """Random loss weighting (Lin et al., 2022): every step, weights ``softmax(z)``, ``z ~ N(0, I)``,
    times the number of tasks."""

    name = "rlw"

    def forward(self, losses):
        L = _stack(losses)
        w = torch.softmax(torch.randn(len(L), device=L.device), 0) * len(L)
        return (w * L).sum(), _weights(losses, w)


class DWA(nn.Module):
    """Dynamic weight average (Liu et al., 2019): ``w_i = T softmax_i(r_i / tau)`` with
    ``r_i = L_i(e-1) / L_i(e-2)`` from the average losses of the two previous epochs (1 for the
    first two). Call ``end_epoch()`` after each epoch."""

    name = "dwa"

    def __init__(self, tasks: list[str], temperature: float = 2.0) -> None:
        super().__init__()
        check_number("dwa", "temperature", temperature, low=1e-6)
        self.tasks, self.temperature = list(tasks), float(temperature)
        self.register_buffer("history", torch.zeros(0, len(self.tasks)))  # average loss per finished epoch
        self.register_buffer("running", torch.zeros(len(self.tasks) + 1))  # sums and step count this epoch

    def current(self) -> torch.Tensor:
        T = len(self.tasks)
        if len(self.history) < 2:
            return torch.ones(T)
        r = self.history[-1] / self.history[-2].clamp_min(1e-12)
        return T * torch.softmax(r / self.temperature, 0)

    def forward(self, losses):
        L = _stack({k: losses[k] for k in self.tasks})
        self.running[:-1] += L.detach().to(self.running.device)
        self.running[-1] += 1
        w = self.current().to(L.device)
        return (w * L).sum(), _weights(self.tasks, w)

    def end_epoch(self) -> None:
        if self.running[-1] > 0:
            self.history = torch.cat([self.history, (self.running[:-1] / self.running[-1]).unsqueeze(0)])[-2:]
        self.running.zero_()


class GradNorm(nn.Module):
    """GradNorm (Chen et al., 2018): learn weights ``w_i`` so that the gradient norms
    ``G_i = |grad_W w_i L_i|`` at the last shared layer ``W`` approach ``mean(G) * r_i^alpha``, where
    ``r_i`` is task i's loss ratio ``L_i(t) / L_i(0)`` relative to the mean ratio: tasks that train
    slower get larger weights. The weights are renormalised to sum to the number of tasks.

    ``forward(losses, shared)`` needs the last shared layer's parameters; it returns the weighted
    total (weights held constant for the network) and writes the GradNorm gradient into ``w.grad``,
    so the weights step with the model's optimizer.
    """

    name = "gradnorm"

    def __init__(self, tasks: list[str], alpha: float = 1.5) -> None:
        super().__init__()
        check_number("gradnorm", "alpha", alpha, low=0.0)
        self.tasks, self.alpha = list(tasks), float(alpha)
        self.w = nn.Parameter(torch.ones(len(self.tasks)))
        self.register_buffer("initial", torch.zeros(0))

    def forward(self, losses, shared: list[torch.Tensor] | None = None):
        if not shared:
            raise TransferkitError("gradnorm needs the last shared layer's parameters: call it as weighter(losses, shared).")
        T = len(self.tasks)
        with torch.no_grad():
            self.w.mul_(T / self.w.sum().clamp_min(1e-12))
        L = _stack({k: losses[k] for k in self.tasks})
        if len(self.initial) == 0:
            self.initial = L.detach().clone()
        norms = []
        for i in range(T):
            g = torch.autograd.grad(self.w[i] * L[i], shared, retain_graph=True, create_graph=True)
            norms.append(torch.sqrt(sum((x * x).sum() for x in g)))
        G = torch.stack(norms)
        ratio = L.detach() / self.initial.clamp_min(1e-12)
        target = (G.mean() * (ratio / ratio.mean()) ** self.alpha).detach()
        self.w.grad = torch.autograd.grad((G - target).abs().sum(), self.w, retain_graph=True)[0]
        w = self.w.detach()
        return (w * L).sum(), _weights(self.tasks, w)


WEIGHTERS: Registry[type[nn.Module]] = Registry("weighter")
for _cls in (Equal, Fixed, Uncertainty, RandomWeights, DWA, GradNorm):
    WEIGHTERS.register(_cls.name)(_cls)
