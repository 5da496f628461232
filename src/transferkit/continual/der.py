"""Dark Experience Replay, DER and DER++ (Buzzega et al., 2020)."""

from __future__ import annotations

import torch.nn.functional as F

from transferkit.continual.base import ContinualStrategy
from transferkit.continual.replay import make_buffer, stream_only
from transferkit.finetune.base import check_number


class DER(ContinualStrategy):
    """Replay past examples with the logits the network gave them when they were seen, and match
    them: ``weight * MSE(f(x_mem), z_mem)``. DER++ adds ``replay_weight * CE(f(x'_mem), y'_mem)`` on
    a second memory batch. The memory is a reservoir sample of the stream.

    Args:
        size: memory size in examples.
        weight: multiplier of the logit-matching term (alpha).
        replay_weight: multiplier of the label term (beta; 0 gives DER).
        batch_size: memory examples per term (None: as many as the stream batch).
        buffer: ``reservoir`` or ``class_balanced``.
    """

    name = "der"

    def __init__(self, size: int = 200, weight: float = 0.3, replay_weight: float = 0.0,
                 batch_size: int | None = None, buffer: str = "reservoir") -> None:
        super().__init__()
        check_number(self.name, "weight", weight, low=0.0)
        check_number(self.name, "replay_weight", replay_weight, low=0.0)
        if batch_size is not None:
            check_number(self.name, "batch_size", batch_size, low=1, integer=True)
        self.weight, self.replay_weight, self.batch_size = float(weight), float(replay_weight), batch_size
        self.buffer = make_buffer(self.name, size, buffer)

    def loss_terms(self, batch, out, model):
        stream_only(batch)
        if len(self.buffer) == 0:
            return {}
        n = self.batch_size or len(batch.targets)
        mem = self.buffer.sample(n)
        terms = {"logits": self.weight * F.mse_loss(model(mem["x"], task=batch.task).logits, mem["logits"])}
        if self.replay_weight:
            mem = self.buffer.sample(n)
            terms["replay"] = self.replay_weight * F.cross_entropy(model(mem["x"], task=batch.task).logits, mem["y"])
        return terms

    def after_step(self, model, batch, out):
        n = len(batch.targets)
        self.buffer.add(batch.x, batch.targets, logits=out.logits[:n].detach())


class DERpp(DER):
    """DER++: DER plus a cross-entropy term on replayed labels."""

    name = "derpp"

    def __init__(self, size: int = 200, weight: float = 0.1, replay_weight: float = 0.5,
                 batch_size: int | None = None, buffer: str = "reservoir") -> None:
        super().__init__(size, weight, replay_weight, batch_size, buffer)
