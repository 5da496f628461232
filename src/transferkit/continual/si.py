"""Synaptic Intelligence (Zenke et al., 2017)."""

from __future__ import annotations

import torch

from transferkit.continual.base import ContinualStrategy, snapshot, trainable
from transferkit.continual.functional import quadratic_penalty, si_importance
from transferkit.strategy import check_number


class SI(ContinualStrategy):
    """Each weight's importance is its contribution to the drop in loss along the training path,
    ``omega = sum_steps -g * delta_theta`` (accumulated after every optimizer step, so it works with
    any optimizer and device), normalised per task by ``(delta over the task)^2 + damping`` and
    summed over tasks into ``Omega``, clamped at zero as in the authors' code. The surrogate loss
    ``weight * sum_i Omega_i (theta_i - theta*_i)^2`` keeps important weights near their value at
    the end of the previous task.

    ``g`` is the total gradient the optimizer stepped on (task loss plus the surrogate and any
    other strategy's terms, after A-GEM's projection or clipping), as Mammoth's SI uses; the
    authors' code uses the gradient of the task loss alone.

    Args:
        weight: the surrogate loss's multiplier (c).
        damping: xi, keeps the normalisation finite for weights that did not move.
    """

    name = "si"

    def __init__(self, weight: float = 1.0, damping: float = 0.1) -> None:
        super().__init__()
        check_number("si", "weight", weight, low=0.0)
        check_number("si", "damping", damping, low=0.0)
        self.weight, self.damping = float(weight), float(damping)

    def before_task(self, model, task):
        now = snapshot(model)
        start = self.state_of("start_")
        # parameters new to training start here (a copy: prev_ moves with every step)
        self.set_params("start_", {k: v.clone() for k, v in now.items() if k not in start})
        self.set_params("prev_", now)
        self.set_params("omega_", {k: torch.zeros_like(v) for k, v in now.items()})

    def after_step(self, model, batch, out):
        prev, omega = self.state_of("prev_"), self.state_of("omega_")
        with torch.no_grad():
            for name, p in trainable(model).items():
                if p.grad is not None and name in prev:
                    omega[name].add_(-p.grad * (p - prev[name]))
                    prev[name].copy_(p)

    def loss_terms(self, batch, out, model):
        importance = self.state_of("importance_")
        if not importance or self.weight == 0:
            return {}
        start = self.state_of("start_")
        anchors = {k: start[k] for k in importance}  # parameters new to training have no importance yet
        return {"penalty": self.weight * quadratic_penalty(dict(model.named_parameters()), anchors, importance)}

    def after_task(self, model, task):
        end = snapshot(model)
        omega = {k: v for k, v in self.state_of("omega_").items() if k in end}
        self.set_params("importance_", si_importance(omega, self.state_of("start_"), end, self.damping,
                                                     self.state_of("importance_")))
        self.set_params("start_", end)
