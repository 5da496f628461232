"""Any timm architecture as a backbone (``timm/<name>``), weights from a local file only."""

from __future__ import annotations

import torch

from transferkit.backbones.base import Backbone
from transferkit.errors import TransferkitError


class TimmBackbone(Backbone):
    """``timm.create_model(name, pretrained=False, num_classes=0)``: pooled features out."""

    input_kind = "image"

    def __init__(self, name: str, in_chans: int = 3) -> None:
        super().__init__()
        try:
            import timm
        except ImportError:
            raise TransferkitError("timm backbones need timm; install it with pip install transferkit[vision].") from None
        if name not in timm.list_models():
            from transferkit.errors import unknown_name

            raise unknown_name("timm model", name, timm.list_models(name[:3] + "*") or timm.list_models()[:20])
        self.net = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_chans)
        self.num_features = int(self.net.num_features)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
