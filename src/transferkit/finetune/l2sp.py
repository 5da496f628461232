"""L2-SP: fine-tune while pulling the backbone towards its source weights."""

from __future__ import annotations

import torch

from transferkit.strategy import Strategy, check_number
from transferkit.finetune.functional import l2sp_penalty


class L2SP(Strategy):
    """Penalty ``weight/2 * ||w - w_src||^2`` on the backbone plus ``weight_new/2 * ||w_head||^2``
    (Li, Grandvalet & Davoine, 2018, "Explicit Inductive Bias for Transfer Learning with CNNs").

    The source weights are captured when training starts and kept as buffers, so they move to the
    device and are checkpointed with the strategy (once per run: they do not change). All layers
    train (combine with ``partial`` etc.).

    Args:
        weight: strength of the pull towards the source weights (alpha in the paper).
        weight_new: plain weight decay on the new head (beta in the paper).
    """

    name = "l2sp"

    def __init__(self, weight: float = 0.01, weight_new: float = 0.0) -> None:
        super().__init__()
        check_number("l2sp", "weight", weight, low=0.0)
        check_number("l2sp", "weight_new", weight_new, low=0.0)
        self.weight, self.weight_new = float(weight), float(weight_new)
        self._names: list[str] = []

    def prepare_model(self, model):
        self._names = [n for n, p in model.backbone.named_parameters()]
        for n, p in model.backbone.named_parameters():
            self.register_buffer(_buf(n), p.detach().clone())
        return model

    def fixed_state_keys(self):
        return {_buf(n) for n in self._names}

    def anchors(self) -> list[torch.Tensor]:
        return [getattr(self, _buf(n)) for n in self._names]

    def loss_terms(self, batch, out, model):
        params = dict(model.backbone.named_parameters())
        terms = {"penalty": 0.5 * self.weight * l2sp_penalty([params[n] for n in self._names], self.anchors())}
        if self.weight_new:
            terms["head_decay"] = 0.5 * self.weight_new * sum(p.pow(2).sum() for p in model.heads.parameters())
        return terms


def _buf(name: str) -> str:
    return "anchor__" + name.replace(".", "__")
