"""Synaptic Intelligence (Zenke et al., 2017)."""

from __future__ import annotations

import torch

from transferkit.continual.base import ContinualStrategy, snapshot, trainable
from transferkit.continual.functional import quadratic_penalty, si_importance
from transferkit.strategy import check_number


class SI(ContinualStrategy):
    """Each weight's importance is its contribution to the drop in loss along the training path,
    ``omega = sum_steps -g * delta_theta`` (accumulated after every optimizer step, so it works with
    any optimizer and device), normalised per task by ``(delta over the task)^2 + damping``. The
    surrogate loss ``weight * sum_i Omega_i (theta_i - theta*_i)^2`` keeps important weights near
    their value at the end of the previous task.

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
        if not self.state_of("start_"):
            self.set_params("start_", now)
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
        return {"penalty": self.weight * quadratic_penalty(dict(model.named_parameters()), self.state_of("start_"),
                                                           importance)}

    def after_task(self, model, task):
        end = snapshot(model)
        new = si_importance(self.state_of("omega_"), self.state_of("start_"), end, self.damping)
        old = self.state_of("importance_")
        self.set_params("importance_", {k: old.get(k, 0) + v for k, v in new.items()})
        self.set_params("start_", end)
