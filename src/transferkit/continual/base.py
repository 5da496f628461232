"""Shared pieces of the continual strategies: growing state, frozen model copies, parameter dicts."""

from __future__ import annotations

import copy

import torch
from torch import nn

from transferkit.continual.state import GrowingState
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


class ContinualStrategy(GrowingState, Strategy):
    """Base of the continual strategies: its tensors may appear after the first task and are
    restored from checkpoints whatever their shape."""

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
