"""Partial fine-tuning: only the last k backbone stages (and the head) train."""

from __future__ import annotations

from torch import nn

from transferkit.strategy import Phase, Strategy, check_number


class PartialFineTune(Strategy):
    """Unfreeze the last ``k`` stages of the backbone; earlier stages stay at the source weights
    (Yosinski et al., 2014, "How transferable are features in deep neural networks?").

    Args:
        k: number of backbone stages (``backbone.stages()``, counted from the output) that train.
        freeze_bn: keep BatchNorm layers of the trained stages at their source statistics and
            affine parameters (they run in eval mode).
    """

    name = "partial"

    def __init__(self, k: int = 1, freeze_bn: bool = False) -> None:
        super().__init__()
        check_number("partial", "k", k, low=0, integer=True)
        self.k, self.freeze_bn = int(k), bool(freeze_bn)

    def trainable_stages(self, model) -> list[nn.Module]:
        stages = model.backbone.stages()
        return stages[len(stages) - min(self.k, len(stages)):]

    def phases(self, model, epochs, lr):
        params = []
        for stage in self.trainable_stages(model):
            for m in stage.modules():
                if self.freeze_bn and isinstance(m, nn.modules.batchnorm._BatchNorm):
                    continue
                params += list(m.parameters(recurse=False))
        return [Phase("train", epochs, [{"params": params, "lr": lr},
                                        {"params": list(model.heads.parameters()), "lr": lr}])]
