"""Multi-source transfer: several source backbones fused with learned weights that sum to one."""

from __future__ import annotations

import torch
from torch import nn

from transferkit.backbones.base import Backbone
from transferkit.errors import TransferkitError


class FusionBackbone(Backbone):
    """``h(x) = sum_i softmax(a)_i * P_i(h_i(x))``: N source backbones, each projected to a common
    width (identity when the widths already agree), mixed by learned softmax weights
    (multi-source transfer in the style of Schmidhuber-era mixtures / "Weighted fusion" baselines).

    Args:
        sources: already-built backbones (see ``create_backbone("fusion", sources=[...])``).
        dim: common feature width (default: the widest source).
    """

    def __init__(self, sources: list[Backbone], dim: int | None = None) -> None:
        super().__init__()
        if len(sources) < 2:
            raise TransferkitError("fusion: give at least two 'sources' to fuse.")
        kinds = {s.input_kind for s in sources}
        if len(kinds) > 1:
            raise TransferkitError(f"fusion: all sources must take the same inputs; got {sorted(kinds)}.")
        self.input_kind = kinds.pop()
        self.sources = nn.ModuleList(sources)
        self.num_features = int(dim or max(s.num_features for s in sources))
        self.projections = nn.ModuleList(
            nn.Identity() if s.num_features == self.num_features else nn.Linear(s.num_features, self.num_features)
            for s in sources)
        self.logits = nn.Parameter(torch.zeros(len(sources)))  # equal weights to start

    def fusion_weights(self) -> torch.Tensor:
        """The mixing weights (non-negative, summing to one)."""
        return torch.softmax(self.logits, 0)

    def features(self, x) -> torch.Tensor:
        w = self.fusion_weights()
        return sum(w[i] * p(s.features(x)) for i, (s, p) in enumerate(zip(self.sources, self.projections)))

    def stages(self) -> list[nn.Module]:
        return list(self.sources) + [self.projections]
