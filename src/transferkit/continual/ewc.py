"""Elastic Weight Consolidation (Kirkpatrick et al., 2017) and its online form (Schwarz et al., 2018)."""

from __future__ import annotations

import torch

from transferkit.continual.base import ContinualStrategy, snapshot, trainable
from transferkit.continual.functional import FISHER_KINDS, fisher_diagonal, quadratic_penalty
from transferkit.errors import TransferkitError
from transferkit.strategy import check_number


class EWC(ContinualStrategy):
    """Penalise moving the weights that mattered for earlier tasks:
    ``weight * sum_t sum_i F_t,i (theta_i - theta*_t,i)^2`` added to the task loss.

    After each task the diagonal Fisher ``F`` is estimated on that task's training data (per-sample
    gradients: one pass for an MLP, ``torch.func`` otherwise) and the weights are anchored. Plain
    EWC keeps one (anchor, Fisher) pair per task; the online form keeps one running pair,
    ``F <- gamma * F + F_new`` anchored at the latest weights. Parameters that start training in
    a later task (a new head, a larger trainable set) join the penalty from that task on.

    Args:
        weight: the penalty's multiplier (lambda; the paper's 1/2 is folded in).
        online: keep one running Fisher instead of one per task.
        gamma: decay of the running Fisher (online only).
        fisher_samples: training examples used for the Fisher (None: all of the task's).
        batch_size: examples per vectorised Fisher batch.
        fisher: which diagonal Fisher (``continual.functional.fisher_diagonal``): ``mammoth`` (the
            default: ``p(y|x) g^2`` of the true label, as Mammoth's online EWC, behind
            BENCHMARKS.md's figures), ``empirical`` (``g^2`` of the true label) or ``true``
            (``sum_c p(c|x) g_c^2``, the expectation over the model's own labels).
    """

    name = "ewc"

    def __init__(self, weight: float = 100.0, online: bool = False, gamma: float = 1.0,
                 fisher_samples: int | None = None, batch_size: int = 256, fisher: str = "mammoth") -> None:
        super().__init__()
        check_number(self.name, "weight", weight, low=0.0)
        check_number(self.name, "gamma", gamma, low=0.0, high=1.0)
        check_number(self.name, "batch_size", batch_size, low=1, integer=True)
        if fisher_samples is not None:
            check_number(self.name, "fisher_samples", fisher_samples, low=1, integer=True)
        if fisher not in FISHER_KINDS:
            raise TransferkitError(f"{self.name}: 'fisher' must be one of {', '.join(FISHER_KINDS)}; got {fisher!r}.")
        self.weight, self.online, self.gamma = float(weight), bool(online), float(gamma)
        self.fisher_samples, self.batch_size, self.fisher = fisher_samples, int(batch_size), fisher
        self.register_buffer("tasks", torch.zeros((), dtype=torch.long))

    def check_stream(self, stream):
        if stream.task != "classification":
            raise TransferkitError(f"{self.name}'s Fisher is that of the class probabilities, but stream "
                                   f"'{stream.name}' holds {stream.task} targets; use si, lwf, er or derpp.")

    def loss_terms(self, batch, out, model):
        if int(self.tasks) == 0 or self.weight == 0:
            return {}
        centre, fisher, const = self._merged()
        return {"penalty": self.weight * (quadratic_penalty(dict(model.named_parameters()), centre, fisher) + const)}

    def _merged(self) -> tuple[dict, dict, torch.Tensor]:
        """The per-task penalties as one quadratic, computed once per task (not every step):
        ``sum_t F_t (x - a_t)^2 = A (x - m)^2 + c`` with ``A = sum_t F_t``, ``m = sum_t F_t a_t / A``
        and ``c = sum_t F_t (a_t - m)^2`` - the same value and gradient at a fraction of the cost."""
        cache = self.__dict__.get("_cache")
        if cache is not None and cache[0] is self._buffers.get("tasks") and cache[1] == int(self.tasks):
            return cache[2]
        pairs = [(self.state_of(f"anchor{t}_"), self.state_of(f"fisher{t}_")) for t in self._slots()]
        if len(pairs) == 1:
            merged = (pairs[0][0], pairs[0][1], next(iter(pairs[0][1].values())).new_zeros(()))
        else:  # a parameter counts in the tasks that trained it (the trainable set may grow)
            names = list(dict.fromkeys(k for _, f in pairs for k in f))
            fisher = {k: sum(f[k] for _, f in pairs if k in f) for k in names}
            centre = {k: sum(f[k] * a[k] for a, f in pairs if k in f) / fisher[k].clamp_min(1e-30) for k in names}
            const = sum(quadratic_penalty(centre, a, f) for a, f in pairs)
            merged = (centre, fisher, const)
        self.__dict__["_cache"] = (self._buffers.get("tasks"), int(self.tasks), merged)
        return merged

    def _slots(self) -> range:
        return range(1) if self.online else range(int(self.tasks))

    def after_task(self, model, task):
        data = task.train
        n = len(data) if self.fisher_samples is None else min(self.fisher_samples, len(data))
        idx = torch.randperm(len(data))[:n].tolist()
        names = list(trainable(model))
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        fisher = {k: torch.zeros_like(p) for k, p in trainable(model).items()}
        for start in range(0, n, self.batch_size):
            x, y = data[idx[start:start + self.batch_size]]
            part = fisher_diagonal(model, x.to(device), torch.as_tensor(y).to(device), names, task=task.head,
                                   kind=self.fisher)
            for k in fisher:
                fisher[k] += part[k]
        model.train(was_training)
        fisher = {k: v / n for k, v in fisher.items()}
        anchor = snapshot(model)
        slot = 0 if self.online else int(self.tasks)
        if self.online and int(self.tasks) > 0:
            fisher = decayed_sum(self.state_of("fisher0_"), fisher, self.gamma)
            params = dict(model.named_parameters())  # a parameter trained only before keeps its place
            anchor = {k: anchor[k] if k in anchor else params[k].detach().clone() for k in fisher}
        self.set_params(f"fisher{slot}_", fisher)
        self.set_params(f"anchor{slot}_", anchor)
        self.tasks += 1


def decayed_sum(old: dict[str, torch.Tensor], new: dict[str, torch.Tensor], gamma: float) -> dict[str, torch.Tensor]:
    """Online EWC's running Fisher ``gamma * F_old + F_new`` (Schwarz et al., 2018) over the
    parameters of either (a parameter new to training starts at ``F_new``; one no longer trained
    keeps its decayed ``gamma * F_old``)."""
    out = {k: gamma * v for k, v in old.items()}
    for k, v in new.items():
        out[k] = out[k] + v if k in out else v
    return out


class OnlineEWC(EWC):
    """Online EWC (Schwarz et al., 2018): one running Fisher ``gamma * F + F_new``, anchored at the
    latest weights; memory does not grow with the number of tasks."""

    name = "oewc"

    def __init__(self, weight: float = 100.0, gamma: float = 1.0, fisher_samples: int | None = None,
                 batch_size: int = 256, fisher: str = "mammoth") -> None:
        super().__init__(weight, True, gamma, fisher_samples, batch_size, fisher)
