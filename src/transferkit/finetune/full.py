"""Full fine-tuning: every layer trains, the backbone optionally at a lower rate."""

from __future__ import annotations

from transferkit.strategy import Phase, Strategy, check_number


class FullFineTune(Strategy):
    """Fine-tune all layers of a pretrained backbone together with the head (Yosinski et al., 2014).

    Args:
        backbone_lr_scale: the backbone's learning rate as a fraction of the head's.
    """

    name = "full"

    def __init__(self, backbone_lr_scale: float = 1.0) -> None:
        super().__init__()
        check_number("full", "backbone_lr_scale", backbone_lr_scale, low=0.0)
        self.backbone_lr_scale = float(backbone_lr_scale)

    def phases(self, model, epochs, lr):
        return [Phase("train", epochs, [
            {"params": list(model.backbone.parameters()), "lr": lr * self.backbone_lr_scale},
            {"params": list(model.heads.parameters()), "lr": lr},
        ])]
