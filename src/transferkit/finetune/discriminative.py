"""Discriminative (layer-wise) learning rates, optionally with gradual unfreezing."""

from __future__ import annotations

from transferkit.strategy import Phase, Strategy, check_number
from transferkit.finetune.functional import layerwise_lrs


class Discriminative(Strategy):
    """Lower learning rates for earlier backbone stages (Howard & Ruder, 2018, ULMFiT).

    Stage i of n (input -> output) trains at ``lr * decay**(n - i)``; the head at ``lr``.
    With ``gradual`` the stages are unfrozen one at a time from the top, one phase each,
    the last phase training everything.

    Args:
        decay: learning-rate factor per stage of depth, in (0, 1].
        gradual: unfreeze the stages gradually (ULMFiT's gradual unfreezing).
    """

    name = "discriminative"

    def __init__(self, decay: float = 0.5, gradual: bool = False) -> None:
        super().__init__()
        check_number("discriminative", "decay", decay, low=1e-6, high=1.0)
        self.decay, self.gradual = float(decay), bool(gradual)

    def phases(self, model, epochs, lr):
        stages = model.backbone.stages()
        lrs = layerwise_lrs(len(stages), lr, self.decay)
        covered = {id(p) for st in stages for p in st.parameters()}
        rest = [p for p in model.backbone.parameters() if id(p) not in covered]  # params outside any stage
        groups = [{"params": list(st.parameters()), "lr": r} for st, r in zip(stages, lrs)]
        groups.insert(0, {"params": rest, "lr": lrs[0] if lrs else lr})
        head = {"params": list(model.heads.parameters()), "lr": lr}
        if not self.gradual:
            return [Phase("train", epochs, [*groups, head])]
        n = min(len(stages) + 1, epochs)  # head alone, then one more stage per phase
        sizes = [epochs // n + (1 if i < epochs % n else 0) for i in range(n)]
        phases = []
        for i, size in enumerate(sizes):
            unfrozen = groups[len(groups) - i:] if i else []
            if i == n - 1:
                unfrozen = groups
            phases.append(Phase(f"unfreeze-{i}", size, [*unfrozen, head]))
        return phases
