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

    @property
    def device(self) -> torch.device:
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")
