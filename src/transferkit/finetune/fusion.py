"""Train a fusion of frozen source backbones: only the mixing weights, projections and head learn."""

from __future__ import annotations

from transferkit.errors import TransferkitError
from transferkit.strategy import Phase, Strategy


class Fusion(Strategy):
    """For a ``fusion`` backbone: keep every source frozen; learn the softmax mixing weights, the
    projections to a common width and the head. The learned weights are reported in summary.json."""

    name = "fusion"

    def phases(self, model, epochs, lr):
        bb = model.backbone
        if not hasattr(bb, "fusion_weights"):
            raise TransferkitError("The 'fusion' strategy needs model.backbone: fusion with several sources.")
        return [Phase("train", epochs, [{"params": [bb.logits, *bb.projections.parameters()], "lr": lr},
                                        {"params": list(model.heads.parameters()), "lr": lr}])]
