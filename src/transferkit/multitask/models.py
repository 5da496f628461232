"""Multi-task architectures: hard parameter sharing, a multi-gate mixture of experts, cross-stitch.

Each returns ``MultiOutput(logits={task: [B, C_t]}, features)`` where ``features`` is the last
shared representation ``Z`` in Sener & Koltun's (2018) sense: every task's output is a function of
``Z`` and the task's own parameters alone, and ``Z`` is what the task-specific computation reads (so
``dL_t/dZ``, which MGDA-UB weighs the tasks with, is a partial derivative through task t's own
part only). Hard sharing: the backbone's features. MMoE: the experts' outputs together with the
gates' input. Cross-stitch: the tasks' activations before the last cross-stitch unit.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from transferkit.backbones import Backbone
from transferkit.errors import TransferkitError
from transferkit.tasks import TaskType, create_task


@dataclass
class MultiOutput:
    """Shape: logits ``{task: [B, C_t]}`` (``C_t = 1`` for regression); features ``[B, ...]``, the last
    shared representation (``[B, D]``; cross-stitch: ``[B, T, W]``)."""

    logits: dict[str, torch.Tensor]
    features: torch.Tensor


def _heads(width: int, outputs: dict[str, int]) -> nn.ModuleDict:
    if not outputs:
        raise TransferkitError("A multi-task model needs at least one task; give outputs={task: classes}.")
    return nn.ModuleDict({t: nn.Linear(width, n) for t, n in outputs.items()})


def task_types(outputs: dict[str, int], tasks: dict[str, TaskType | str] | None) -> dict[str, TaskType]:
    """Each head's task type: ``tasks[head]`` (a ``TaskType`` or a name), classification where not given."""
    tasks = tasks or {}
    unknown = sorted(set(tasks) - set(outputs))
    if unknown:
        raise TransferkitError(f"Task types are given for '{unknown[0]}', which is not a task of the model "
                               f"({', '.join(outputs)}); name the model's tasks.")
    return {t: (v if isinstance(v, TaskType) else create_task(v)) if (v := tasks.get(t)) is not None
            else create_task("classification") for t in outputs}


class HardSharing(nn.Module):
    """A shared backbone and one linear head per task (Caruana, 1997).

    Args:
        backbone: the shared network.
        outputs: the width of each task's head (classes, or 1 per value for regression).
        tasks: each task's type (``TaskType`` or name; default classification), which gives its loss
            and metrics.

    Example:
        >>> model = HardSharing(create_backbone("mlp", in_features=784), {"left": 10, "right": 10})
    """

    def __init__(self, backbone: Backbone, outputs: dict[str, int], tasks: dict[str, TaskType | str] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = _heads(backbone.num_features, outputs)
        self.tasks = task_types(outputs, tasks)

    def shared_parameters(self):
        return list(self.backbone.parameters())

    def last_shared_parameters(self):
        return list(self.backbone.stages()[-1].parameters())

    def forward(self, x, task=None, precomputed: bool = False) -> MultiOutput:
        z = x if precomputed else self.backbone.features(x)
        return MultiOutput({t: h(z) for t, h in self.heads.items()}, z)


class MMoE(nn.Module):
    """Multi-gate mixture of experts (Ma et al., 2018): ``experts`` small MLPs on the backbone's
    features; each task mixes them with its own softmax gate, then has its own head.

    Args:
        backbone: the shared input encoder (``nn.Identity``-like backbones give the original MMoE).
        outputs: classes (or 1 for regression) per task.
        experts: number of experts.
        expert_width: width of each expert's output.
        tasks: each task's type (default classification).
    """

    def __init__(self, backbone: Backbone, outputs: dict[str, int], experts: int = 4, expert_width: int = 64,
                 tasks: dict[str, TaskType | str] | None = None) -> None:
        super().__init__()
        if experts < 1 or expert_width < 1:
            raise TransferkitError(f"MMoE: 'experts' and 'expert_width' must be >= 1; got {experts}, {expert_width}.")
        d = backbone.num_features
        self.backbone = backbone
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(d, expert_width), nn.ReLU()) for _ in range(experts))
        self.gates = nn.ModuleDict({t: nn.Linear(d, experts) for t in outputs})
        self.heads = _heads(expert_width, outputs)
        self.tasks = task_types(outputs, tasks)

    def shared_parameters(self):
        return [*self.backbone.parameters(), *self.experts.parameters()]

    def last_shared_parameters(self):
        return list(self.experts.parameters())

    def gate_weights(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per task, the softmax mixture weights over the experts. Shape: ``{task: [B, E]}``."""
        return {t: torch.softmax(g(z), dim=-1) for t, g in self.gates.items()}

    def forward(self, x, task=None, precomputed: bool = False) -> MultiOutput:
        """``features`` is ``[experts' outputs (flattened), gate input]`` (``[B, E*W + D]``), or the
        experts' outputs alone when nothing shared computes the gate input (cached features, a frozen
        backbone): everything the task-specific gates and heads read. The tasks' parts read it back
        from that one tensor, so a gradient w.r.t. ``features`` is the partial derivative through
        the gates and heads, not through the experts."""
        z = x if precomputed else self.backbone.features(x)
        e = torch.stack([expert(z) for expert in self.experts], dim=1)  # [B, E, W]
        B, E, W = e.shape
        rep = torch.cat([e.flatten(1), z.flatten(1)], 1) if z.requires_grad else e.flatten(1)
        e_t = rep[:, :E * W].view(B, E, W)
        z_t = rep[:, E * W:].view_as(z) if z.requires_grad else z
        logits = {t: self.heads[t]((w.unsqueeze(-1) * e_t).sum(1)) for t, w in self.gate_weights(z_t).items()}
        return MultiOutput(logits, rep)


class CrossStitch(nn.Module):
    """Cross-stitch networks (Misra et al., 2016): one copy of the network per task, and after
    each block a learned linear mix of the tasks' activations, ``x'_t = sum_s a[t, s] x_s``
    (initialised to keep 90 % of a task's own activation).

    Args:
        blocks: the network as a list of blocks (e.g. ``[Linear+ReLU, Linear+ReLU]``), copied per task.
        width: features out of the last block.
        outputs: classes (or 1 for regression) per task.
        tasks: each task's type (default classification).
    """

    def __init__(self, blocks: list[nn.Module], width: int, outputs: dict[str, int], keep: float = 0.9,
                 tasks: dict[str, TaskType | str] | None = None) -> None:
        super().__init__()
        T = len(outputs)
        if T < 2:
            raise TransferkitError("CrossStitch mixes the activations of several tasks; give it two or more.")
        self.columns = nn.ModuleList(nn.ModuleList(copy.deepcopy(b) for b in blocks) for _ in outputs)
        init = torch.full((T, T), (1 - keep) / (T - 1))
        init.fill_diagonal_(keep)
        self.stitches = nn.ParameterList(nn.Parameter(init.clone()) for _ in blocks)
        self.heads = _heads(width, outputs)
        self.tasks = task_types(outputs, tasks)

    def shared_parameters(self):
        return [*self.columns.parameters(), *self.stitches.parameters()]

    def last_shared_parameters(self):
        return [self.stitches[-1]]

    def forward(self, x, task=None, precomputed: bool = False) -> MultiOutput:
        """``features`` is the last block's output of every task's column before the last stitch,
        ``[B, T, W]``: every task reads all of it (``x_t = sum_s a[t, s] h_s``), and row t of the last
        stitch acts on task t's output alone. (The stitched activations themselves would give each
        task a slot of its own, a diagonal Gram matrix of ``dL_t/dZ`` that ignores how the tasks share.)"""
        xs, h = [x] * len(self.tasks), None
        for layer, stitch in enumerate(self.stitches):
            h = torch.stack([col[layer](xi) for col, xi in zip(self.columns, xs)], 1)  # [B, T, ...]
            xs = list(torch.einsum("ts,bs...->tb...", stitch, h))
        return MultiOutput({t: self.heads[t](xi) for t, xi in zip(self.tasks, xs)}, h)
