"""The one backbone contract every strategy relies on."""

from __future__ import annotations

import torch
from torch import nn


class Backbone(nn.Module):
    """A feature extractor h in f(x) = g(h(x)).

    Subclasses set ``num_features`` and ``input_kind`` (``"image"``, ``"vector"`` or ``"text"``)
    and implement ``features``. ``forward`` is ``features``.

    Shape:
        features(x) -> ``[B, num_features]``.
    """

    num_features: int
    input_kind: str = "image"

    def features(self, x) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x) -> torch.Tensor:
        return self.features(x)

    def stages(self) -> list[nn.Module]:
        """The backbone's blocks from input to output (what partial fine-tuning and layer-wise
        learning rates count in). Default: the children that hold parameters, descending into a
        lone container."""
        return _param_children(self)

    @property
    def device(self) -> torch.device:
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")


def _param_children(module: nn.Module) -> list[nn.Module]:
    kids = [m for m in module.children() if any(True for _ in m.parameters())]
    if len(kids) == 1 and len(list(kids[0].children())) > 1:
        return _param_children(kids[0])
    return kids
