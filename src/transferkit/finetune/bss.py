"""BSS: batch spectral shrinkage of the features during fine-tuning."""

from __future__ import annotations

from transferkit.strategy import Strategy, check_number
from transferkit.finetune.functional import bss_penalty


class BSS(Strategy):
    """Shrink the ``k`` smallest singular values of each feature batch, which carry the
    non-transferable directions (Chen et al., 2019, NeurIPS). All layers train.

    Args:
        weight: multiplier of the penalty (eta in the paper).
        k: how many of the smallest singular values are penalised.
    """

    name = "bss"

    def __init__(self, weight: float = 0.001, k: int = 1) -> None:
        super().__init__()
        check_number("bss", "weight", weight, low=0.0)
        check_number("bss", "k", k, low=1, integer=True)
        self.weight, self.k = float(weight), int(k)

    def loss_terms(self, batch, out, model):
        return {"penalty": self.weight * bss_penalty(out.features, self.k)}
