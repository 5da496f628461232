"""Two-stage fine-tuning: train the new head on a frozen backbone, then everything at a lower rate."""

from __future__ import annotations

from transferkit.errors import TransferkitError
from transferkit.strategy import Phase, Strategy, check_number, head_only_phase


class TwoStage(Strategy):
    """Train the head on a frozen backbone, then all layers at a lower rate (Kumar et al., 2022, LP-FT).

    The classic Keras transfer-learning recipe: the second stage runs at ``lr * finetune_lr_scale``.

    Args:
        head_fraction: share of the epochs spent on the head alone (at least one epoch each stage).
        finetune_lr_scale: learning-rate multiplier for the second stage.
    """

    name = "two_stage"

    def __init__(self, head_fraction: float = 0.5, finetune_lr_scale: float = 0.1) -> None:
        super().__init__()
        check_number("two_stage", "head_fraction", head_fraction, low=0.0, high=1.0)
        check_number("two_stage", "finetune_lr_scale", finetune_lr_scale, low=0.0)
        self.head_fraction = float(head_fraction)
        self.finetune_lr_scale = float(finetune_lr_scale)

    def phases(self, model, epochs, lr):
        if epochs < 2:
            raise TransferkitError(f"two_stage needs at least 2 epochs (one per stage); got epochs={epochs}.")
        head_epochs = min(epochs - 1, max(1, round(self.head_fraction * epochs)))
        return [
            head_only_phase(model, head_epochs, lr, name="head"),
            Phase("finetune", epochs - head_epochs, [{"params": list(model.parameters()), "lr": lr * self.finetune_lr_scale}]),
        ]
