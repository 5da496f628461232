"""Knowledge distillation: a student learns the task and a frozen teacher's softened predictions."""

from __future__ import annotations

from pathlib import Path

import torch

from transferkit.errors import TransferkitError
from transferkit.finetune.base import Strategy, check_number
from transferkit.finetune.functional import kd_loss, similarity_preserving_loss
from transferkit.model import TransferModel


class KD(Strategy):
    """Add ``weight * kd_loss(student, teacher, temperature)`` to the task loss (Hinton, Vinyals &
    Dean, 2015, "Distilling the Knowledge in a Neural Network"), and optionally match the features.

    Feature matching compares the batch similarity structure of the student's and the teacher's
    features (Tung & Mori, 2019, "Similarity-Preserving Knowledge Distillation"), so the student's
    feature width need not equal the teacher's.

    Args:
        teacher: a trained run directory (``transferkit train`` output) or a ``TransferModel``.
        temperature: softmax temperature for both models.
        weight: multiplier of the distillation term.
        feature_weight: multiplier of the feature-matching term (0: off).
    """

    name = "kd"

    def __init__(self, teacher: str | Path | TransferModel | None = None, temperature: float = 4.0,
                 weight: float = 1.0, feature_weight: float = 0.0) -> None:
        super().__init__()
        check_number("kd", "temperature", temperature, low=1e-3)
        check_number("kd", "weight", weight, low=0.0)
        check_number("kd", "feature_weight", feature_weight, low=0.0)
        if teacher is None:
            raise TransferkitError("kd: 'teacher' is required; give a trained run directory (args: {teacher: runs/big}).")
        if not isinstance(teacher, TransferModel):
            from transferkit.api import load_run

            teacher = load_run(teacher).model
        teacher.eval().requires_grad_(False)
        object.__setattr__(self, "teacher", teacher)  # not a submodule: never trained nor checkpointed here
        self.temperature, self.weight, self.feature_weight = float(temperature), float(weight), float(feature_weight)

    def loss_terms(self, batch, out, model):
        if batch.precomputed:
            raise TransferkitError("kd cannot run on cached features; combine it with a strategy that trains on inputs.")
        device = out.logits.device
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        with torch.no_grad():
            teacher_out = self.teacher(batch.x)
        teacher_logits = teacher_out.logits
        if teacher_logits.shape != out.logits.shape:
            raise TransferkitError(f"kd: the teacher predicts {teacher_logits.shape[-1]} classes but the student "
                                   f"{out.logits.shape[-1]}; train both on the same label set.")
        terms = {"distill": self.weight * kd_loss(out.logits, teacher_logits, self.temperature)}
        if self.feature_weight:
            terms["features"] = self.feature_weight * similarity_preserving_loss(out.features, teacher_out.features)
        return terms
