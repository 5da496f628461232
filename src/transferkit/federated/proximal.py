"""FedProx's client term (Li et al., 2020, "Federated Optimization in Heterogeneous Networks"):
mu / 2 * ||w - w_global||^2 over the exchanged tensors, added to each client's local loss."""

from __future__ import annotations

import numpy as np
import torch

from transferkit.strategy import Batch, Strategy, check_number


def proximal_penalty(params: list[torch.Tensor], anchors: list[torch.Tensor], mu: float) -> torch.Tensor:
    """``mu / 2 * sum_i ||params_i - anchors_i||^2`` (0 at the anchors).

    Shape:
        params, anchors: tensors of matching shapes; returns a scalar.
    """
    total = sum(((p - a) ** 2).sum() for p, a in zip(params, anchors, strict=True))
    return 0.5 * mu * total


class Proximal(Strategy):
    """Keep the tensors a client trains near the round's global ones: FedProx's term.

    Args:
        weight: mu, the term's multiplier (Flower's FedProx sends it as ``proximal-mu``).
        anchors: the global arrays of this round, by parameter name.
    """

    name = "fedprox"

    def __init__(self, weight: float, anchors: dict[str, np.ndarray]) -> None:
        super().__init__()
        check_number("fedprox", "weight", weight, low=0)
        self.weight = float(weight)
        self.anchors = {n: torch.as_tensor(np.asarray(a)).clone() for n, a in anchors.items()}

    def loss_terms(self, batch: Batch, out, model) -> dict[str, torch.Tensor]:
        params = dict(model.named_parameters())
        names = list(self.anchors)
        anchors = [self.anchors[n].to(params[n].device) for n in names]
        return {"penalty": proximal_penalty([params[n] for n in names], anchors, self.weight)}
