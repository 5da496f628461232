"""Loss weighters: turn the per-task losses into one loss to minimise.

A weighter is a small ``nn.Module`` (its learnable weights move to the device and are
checkpointed) whose ``forward(losses, **context)`` returns ``(total, {task: weight})``; the
context holds what some methods need (``features``: the shared representation; ``last_shared``:
the last shared layer's parameters). Gradient-based methods (PCGrad, CAGrad, IMTL-G, exact MGDA)
also have ``weights(K) -> w``, the per-task weights from the Gram matrix of the task gradients:
the trainer then sets the shared parameters' gradient to ``sum_t w_t g_t``
(``multitask.gradients.aggregated_backward``); ``aggregate(G)`` gives ``(w G, w)`` directly.
MGDA-UB weighs the losses from the gradients w.r.t. the shared representation and needs one
ordinary backward. Methods with ``needs_every_task = True`` need every task's loss in each step,
so they cannot train on alternating batches.
"""

from __future__ import annotations

import torch
from torch import nn

from transferkit.errors import TransferkitError
from transferkit.multitask import functional as F
from transferkit.strategy import check_number
from transferkit.registry import Registry


def _stack(losses: dict[str, torch.Tensor]) -> torch.Tensor:
    if not losses:
        raise TransferkitError("A weighter needs at least one task loss.")
    return torch.stack([losses[k] for k in losses])


def _every_task(owner: str, tasks: list[str], losses: dict) -> dict[str, torch.Tensor]:
    missing = [t for t in tasks if t not in losses]
    if missing:
        raise TransferkitError(f"{owner} needs every task's loss in each step; this batch has none for "
                               f"{', '.join(missing)}. Use mixed batches (data.batches: mixed).")
    return {k: losses[k] for k in tasks}


def _weights(names, values: torch.Tensor) -> dict[str, float]:
    return {k: float(v) for k, v in zip(names, values.detach())}


class Equal(nn.Module):
    """The plain sum of the task losses (every weight 1)."""

    name = "equal"
    exact_in_processes = True  # several processes take the one-process step (multitask.step)

    def forward(self, losses: dict[str, torch.Tensor], **context):
        L = _stack(losses)
        return L.sum(), _weights(losses, torch.ones(len(L)))


class Fixed(nn.Module):
    """Constant weights given per task: ``{"left": 1.0, "right": 0.5}``."""

    name = "fixed"
    exact_in_processes = True  # several processes take the one-process step (multitask.step)

    def __init__(self, weights: dict[str, float]) -> None:
        super().__init__()
        if not isinstance(weights, dict) or not weights:
            raise TransferkitError("fixed: 'weights' must map each task name to a number; got "
                                   f"{weights!r}.")
        for k, v in weights.items():
            check_number("fixed", f"weights.{k}", v, low=0.0)
        self.weights = dict(weights)

    def forward(self, losses, **context):
        missing = [k for k in losses if k not in self.weights]
        if missing:
            raise TransferkitError(f"fixed: no weight for task(s) {', '.join(missing)}; add them to 'weights'.")
        w = torch.tensor([self.weights[k] for k in losses], device=next(iter(losses.values())).device)
        return (w * _stack(losses)).sum(), _weights(losses, w)


def uncertainty_scale(task_type: str) -> float:
    """The factor on ``exp(-s) L`` in Kendall et al.'s (2018) objective for a task of this type:
    1/2 for a regression task (a Gaussian likelihood, eq. 7: ``L / (2 sigma^2) + log sigma``), 1 for a
    classification task (a softmax likelihood scaled by ``1 / sigma^2``, eq. 10: ``L / sigma^2 + log sigma``;
    a multi-label task's Bernoulli likelihood is taken the same way)."""
    return 0.5 if task_type == "regression" else 1.0


class Uncertainty(nn.Module):
    """Homoscedastic uncertainty weighting (Kendall et al., 2018): learn ``s_i = log sigma_i^2`` and
    minimise ``sum_i c_i exp(-s_i) L_i + s_i / 2``, with ``c_i = 1`` for classification tasks (eq. 10)
    and ``1/2`` for regression tasks (eq. 7); ``s_i / 2`` is ``log sigma_i``. A task with a higher loss
    gets a higher ``s_i`` and so a smaller weight ``c_i exp(-s_i)``. The ``s_i`` train with the model
    (they are parameters).

    Args:
        tasks: the task names.
        task_types: ``{task: "classification" | "multilabel" | "regression"}``; a task not named
            counts as classification.
    """

    name = "uncertainty"
    exact_in_processes = True  # several processes take the one-process step (multitask.step)

    def __init__(self, tasks: list[str], task_types: dict[str, str] | None = None) -> None:
        super().__init__()
        self.tasks = list(tasks)
        types = dict(task_types or {})
        unknown = sorted(set(types) - set(self.tasks))
        if unknown:
            raise TransferkitError(f"uncertainty: 'task_types' names the unknown task '{unknown[0]}'; "
                                   f"give types for {', '.join(self.tasks)}.")
        self.register_buffer("scale", torch.tensor([uncertainty_scale(types.get(t, "classification"))
                                                    for t in self.tasks]), persistent=False)
        self.log_vars = nn.Parameter(torch.zeros(len(self.tasks)))

    def forward(self, losses, **context):
        idx = [self.tasks.index(k) for k in losses]  # the tasks present in this batch
        L, s = _stack(losses), self.log_vars[idx]
        w = self.scale[idx].to(s.dtype) * torch.exp(-s)
        return (w * L + 0.5 * s).sum(), _weights(losses, w)


class RandomWeights(nn.Module):
    """Random loss weighting (Lin et al., 2022): every step, weights ``softmax(z)``, ``z ~ N(0, I)``,
    times the number of tasks."""

    name = "rlw"

    def forward(self, losses, **context):
        L = _stack(losses)
        w = torch.softmax(torch.randn(len(L), device=L.device), 0) * len(L)
        return (w * L).sum(), _weights(losses, w)


class DWA(nn.Module):
    """Dynamic weight average (Liu et al., 2019): ``w_i = T softmax_i(r_i / tau)`` with
    ``r_i = L_i(e-1) / L_i(e-2)`` from the average losses of the two previous epochs (1 for the
    first two). Call ``end_epoch()`` after each epoch."""

    needs_every_task = True

    name = "dwa"

    def __init__(self, tasks: list[str], temperature: float = 2.0) -> None:
        super().__init__()
        check_number("dwa", "temperature", temperature, low=1e-6)
        self.tasks, self.temperature = list(tasks), float(temperature)
        # fixed shapes, so the state loads back into a fresh weighter (a resumed run)
        self.register_buffer("history", torch.zeros(2, len(self.tasks)))  # mean losses of the last two epochs
        self.register_buffer("epochs", torch.zeros((), dtype=torch.long))  # finished epochs (history rows that are set)
        self.register_buffer("running", torch.zeros(len(self.tasks) + 1))  # sums and step count this epoch

    def current(self) -> torch.Tensor:
        T = len(self.tasks)
        if int(self.epochs) < 2:
            return torch.ones(T)
        r = self.history[1] / self.history[0].clamp_min(1e-12)
        return T * torch.softmax(r / self.temperature, 0)

    def forward(self, losses, **context):
        L = _stack(_every_task("dwa", self.tasks, losses))
        self.running[:-1] += L.detach().to(self.running.device)
        self.running[-1] += 1
        w = self.current().to(L.device)
        return (w * L).sum(), _weights(self.tasks, w)

    def end_epoch(self) -> None:
        if self.running[-1] > 0:
            self.history[0] = self.history[1]
            self.history[1] = self.running[:-1] / self.running[-1]
            self.epochs += 1
        self.running.zero_()


class GradNorm(nn.Module):
    """GradNorm (Chen et al., 2018): learn weights ``w_i`` so that the gradient norms
    ``G_i = |grad_W w_i L_i|`` at the last shared layer ``W`` approach ``mean(G) * r_i^alpha``, where
    ``r_i`` is task i's loss ratio ``L_i(t) / L_i(0)`` relative to the mean ratio: tasks that train
    slower get larger weights. The weights are renormalised to sum to the number of tasks.

    ``forward(losses, last_shared=...)`` needs the last shared layer's parameters; it returns the weighted
    total (weights held constant for the network) and writes the GradNorm gradient into ``w.grad``,
    so the weights step with the model's optimizer.
    """

    needs_every_task = True

    name = "gradnorm"

    def __init__(self, tasks: list[str], alpha: float = 1.5) -> None:
        super().__init__()
        check_number("gradnorm", "alpha", alpha, low=0.0)
        self.tasks, self.alpha = list(tasks), float(alpha)
        self.w = nn.Parameter(torch.ones(len(self.tasks)))
        self.register_buffer("initial", torch.zeros(len(self.tasks)))  # L_i(0), once ``started``
        self.register_buffer("started", torch.zeros((), dtype=torch.bool))

    def forward(self, losses, last_shared: list[torch.Tensor] | None = None, **context):
        shared = last_shared
        if not shared:
            raise TransferkitError("gradnorm needs the last shared layer's parameters: "
                                   "call it as weighter(losses, last_shared=[...]).")
        T = len(self.tasks)
        with torch.no_grad():  # keep the weights positive, summing to T (a large step can overshoot zero)
            self.w.clamp_(min=1e-3).mul_(T / self.w.sum())
        L = _stack(_every_task("gradnorm", self.tasks, losses))
        if not bool(self.started):
            self.initial.copy_(L.detach())
            self.started.fill_(True)
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


class _Aggregator(nn.Module):
    """Base of the gradient-based methods: ``forward`` reports the plain sum (for logging); the
    trainer calls ``weights`` on the Gram matrix of the per-task gradients of the shared parameters."""

    needs_every_task = True
    gradient_based = True
    exact_in_processes = True  # from the whole batch's per-task gradients (Step.reduce)

    def forward(self, losses, **context):
        L = _stack(losses)
        return L.sum(), _weights(losses, torch.ones(len(L)))

    def aggregate(self, G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The update direction and weights for the gradient matrix ``G [T, P]``."""
        return F._combine(self.weights(F.gram(G)), G)


class PCGrad(_Aggregator):
    """PCGrad (Yu et al., 2020): project away each task gradient's conflicts, then sum."""

    name = "pcgrad"

    def weights(self, K):
        T = len(K)
        return F.pcgrad_weights(K, [torch.randperm(T).tolist() for _ in range(T)]).sum(0)


class CAGrad(_Aggregator):
    """CAGrad (Liu et al., 2021) with conflict radius ``c``; ``rescale`` divides the update by
    ``1 + c^2`` as the reference implementation does."""

    name = "cagrad"

    def __init__(self, c: float = 0.5, rescale: bool = True) -> None:
        super().__init__()
        check_number("cagrad", "c", c, low=0.0)
        self.c, self.rescale = float(c), bool(rescale)

    def weights(self, K):
        return F.cagrad_weights(K, self.c, self.rescale)


class IMTLG(_Aggregator):
    """IMTL-G (Liu et al., 2021): the update projects equally onto every task's gradient direction."""

    name = "imtl_g"

    def weights(self, K):
        return F.imtl_g_weights(K)


class MGDAUB(nn.Module):
    """MGDA (Sener & Koltun, 2018): min-norm weights of the task gradients (Frank-Wolfe,
    ``max_iters`` / ``epsilon``). With ``upper_bound`` (MGDA-UB, the default) the gradients are
    taken w.r.t. the shared representation (a backward through each head only) and the weighted
    sum has one ordinary backward; without it, w.r.t. the shared parameters (exact MGDA)."""

    needs_every_task = True

    name = "mgda"

    def __init__(self, upper_bound: bool = True, max_iters: int = 250, epsilon: float = 1e-5) -> None:
        super().__init__()
        check_number("mgda", "max_iters", max_iters, low=1, integer=True)
        check_number("mgda", "epsilon", epsilon, low=0.0)
        self.upper_bound, self.max_iters, self.epsilon = bool(upper_bound), int(max_iters), float(epsilon)
        self.gradient_based = not self.upper_bound

    def weights(self, K):
        return F.min_norm_weights(K, self.max_iters, self.epsilon).numpy()

    def aggregate(self, G):
        return F.mgda(G, self.max_iters, self.epsilon)

    def forward(self, losses, features: torch.Tensor | None = None, **context):
        from transferkit.multitask.gradients import representation_gradients

        L = _stack(losses)
        if not self.upper_bound:
            return L.sum(), _weights(losses, torch.ones(len(L)))
        if features is None:
            raise TransferkitError("mgda needs the shared representation: call it as weighter(losses, features=z).")
        dz = representation_gradients(list(L), features).flatten(1)
        w = F.min_norm_weights(dz @ dz.t(), self.max_iters, self.epsilon).to(L.device, L.dtype).detach()
        return (w * L).sum(), _weights(losses, w)


WEIGHTERS: Registry[type[nn.Module]] = Registry("weighter")
for _cls in (Equal, Fixed, Uncertainty, RandomWeights, DWA, GradNorm, MGDAUB, PCGrad, CAGrad, IMTLG):
    WEIGHTERS.register(_cls.name)(_cls)


def create_weighter(name: str, tasks: list[str], task_types: dict[str, str] | None = None, **args) -> nn.Module:
    """Build a registered weighter; methods that keep per-task state get the task names, and those
    whose form depends on the task type (``uncertainty``) get ``task_types``."""
    import inspect

    cls = WEIGHTERS.get(name)
    params = inspect.signature(cls.__init__).parameters
    if "tasks" in params and "tasks" not in args:
        args = {"tasks": list(tasks)} | args
    if "task_types" in params and "task_types" not in args and task_types is not None:
        args = {"task_types": dict(task_types)} | args
    return WEIGHTERS.build(name, **args)
