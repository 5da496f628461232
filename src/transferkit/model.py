"""f(x) = g(h(x)): a backbone and one or more named heads, one output type in every mode."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from transferkit.backbones import Backbone
from transferkit.tasks import Classification, TaskType


@dataclass
class Output:
    """What a model returns, in train and eval mode alike.

    Shape:
        logits: ``[B, C]``; features: ``[B, D]``.
    """

    logits: torch.Tensor
    features: torch.Tensor


class TransferModel(nn.Module):
    """A backbone plus named heads (``"main"`` for a single task), all of one task type
    (``task_type``, default classification; see ``transferkit.tasks``).

    ``forward(x, task=None, precomputed=False)``: with ``precomputed=True`` the input is
    already a feature batch (cached features) and the backbone is skipped.
    """

    def __init__(self, backbone: Backbone, heads: dict[str, nn.Module] | nn.Module,
                 task_type: TaskType | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict(heads if isinstance(heads, dict) else {"main": heads})
        self.task_type = task_type or Classification()

    @property
    def tasks(self) -> dict[str, TaskType]:
        """Each head's task type: the trainer's loss and the evaluation's metrics come from it."""
        return {head: self.task_type for head in self.heads}

    @property
    def default_task(self) -> str:
        return next(iter(self.heads))

    def head_parameters(self):
        return self.heads.parameters()

    def forward(self, x, task: str | None = None, precomputed: bool = False) -> Output:
        features = x if precomputed else self.backbone.features(x)
        logits = self.heads[task or self.default_task](features)
        return Output(logits=logits, features=features)

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def check_accepts(model: nn.Module, x, backbone: str, what: str, fix: str) -> nn.Module:
    """Run ``model`` on an example batch before any training: a shape mismatch becomes one clear
    error naming the backbone, the input shape and ``fix``. Returns the model in training mode."""
    from transferkit.errors import TransferkitError

    try:
        with torch.no_grad():
            model.eval()(x)
    except RuntimeError as e:
        raise TransferkitError(f"Backbone '{backbone}' does not accept {what} of shape {tuple(x.shape[1:])} "
                               f"({str(e).splitlines()[0]}); {fix}.") from None
    return model.train()
