"""The baseline every transfer is measured against: the same architecture trained from random weights."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from transferkit.strategy import Strategy


class FromScratch(Strategy):
    """Re-initialise every layer (whatever weights were loaded) and train all of them.

    Args:
        seed: seed for the re-initialisation (None: the trainer's global seed state).
    """

    name = "scratch"

    def __init__(self, seed: int | None = None) -> None:
        super().__init__()
        self.seed = seed

    def prepare_model(self, model):
        ctx = torch.random.fork_rng() if self.seed is not None else nullcontext()
        with ctx:
            if self.seed is not None:
                torch.manual_seed(self.seed)
            for m in model.modules():
                if m is not model and hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        return model

