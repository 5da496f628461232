"""Shared pieces of the continual strategies: growing state, frozen model copies, parameter dicts."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.continual.state import GrowingState
from transferkit.errors import TransferkitError
from transferkit.strategy import Strategy


def key(name: str) -> str:
    """A parameter name usable as a buffer name (``backbone.0.weight`` -> ``backbone__0__weight``)."""
    return name.replace(".", "__")


def trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in trainable(model).items()}


def frozen_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` whose parameters never train (the teacher of LwF and iCaRL)."""
    old = copy.deepcopy(model).eval()
    for p in old.parameters():
        p.requires_grad_(False)
    return old


def head_index(model: nn.Module, head: str | None) -> int:
    """Position of ``head`` among the model's heads (0, the default head, for None)."""
    return list(model.heads).index(head) if head is not None else 0


def logits_by_head(model: nn.Module, features: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
    """Each row's logits from its own head: ``heads[i]`` is the position of row i's head in
    ``model.heads`` (a multi-head stream's replayed samples go through the head of their task,
    with their task's labels). The heads must have one width.

    Shape:
        features: ``[B, D]``; heads: ``[B]``; returns ``[B, C]``.
    """
    names = list(model.heads)
    heads = heads.to(features.device)
    groups = torch.unique(heads).tolist()
    if len(groups) == 1:
        return model.heads[names[groups[0]]](features)
    rows = [(heads == h).nonzero().flatten() for h in groups]
    logits = torch.cat([model.heads[names[h]](features[r]) for h, r in zip(groups, rows)])
    return logits[torch.argsort(torch.cat(rows))]


def forward_by_head(model: nn.Module, x: torch.Tensor, heads: torch.Tensor | None, task: str | None,
                    precomputed: bool = False) -> torch.Tensor:
    """Logits of ``x``: through each row's own head when ``heads`` is given, else through ``task``'s."""
    if heads is None:
        return model(x, task=task, precomputed=precomputed).logits
    return logits_by_head(model, x if precomputed else model.backbone.features(x), heads)


def task_loss(model: nn.Module, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The model's task loss (cross-entropy, BCE with logits, MSE/L1) of replayed or stored examples."""
    task = getattr(model, "task_type", None)
    return task.loss(logits, targets) if task is not None else F.cross_entropy(logits, targets)


def check_heads_of_one_width(owner: str, stream) -> None:
    """Replaying samples through their own heads needs heads of one width (their logits are stacked)."""
    widths = {len(e.classes) for e in stream.experiences}
    if stream.multi_head and len(widths) > 1:
        raise TransferkitError(f"{owner} replays samples through their own task's head and needs tasks with the same "
                               f"number of classes; stream '{stream.name}' has {sorted(widths)}: set "
                               "stream.multi_head to false.")


class ContinualStrategy(GrowingState, Strategy):
    """Base of the continual strategies: its tensors may appear after the first task and are
    restored from checkpoints whatever their shape."""

    def check_stream(self, stream) -> None:
        """Raise a ``TransferkitError`` before any training if the strategy cannot learn ``stream``."""
        return None

    def prepare_model(self, model):
        self.__dict__["_model"] = model  # a plain reference (not a submodule): resuming rebuilds copies from it
        return model

    def state_of(self, prefix: str) -> dict[str, torch.Tensor]:
        """Buffers named ``prefix + key(param)``, keyed by parameter name."""
        return {n[len(prefix):].replace("__", "."): b for n, b in self._buffers.items() if n.startswith(prefix)}

    def set_params(self, prefix: str, tensors: dict[str, torch.Tensor]) -> None:
        for name, value in tensors.items():
            self.set_state(prefix + key(name), value)


class TeacherMixin(ContinualStrategy):
    """Keeps ``self.old``, a frozen copy of the model at the end of the previous task, and
    recreates it from the model when a checkpoint that has one is loaded."""

    def __init__(self) -> None:
        super().__init__()
        self.old: nn.Module | None = None

    def _load_from_state_dict(self, state_dict, prefix, *args):
        if self.old is None and any(k.startswith(prefix + "old.") for k in state_dict) and "_model" in self.__dict__:
            self.old = frozen_copy(self.__dict__["_model"])
        super()._load_from_state_dict(state_dict, prefix, *args)
