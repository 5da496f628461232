"""Knowledge distillation: a student learns the task and a frozen teacher's softened predictions."""

from __future__ import annotations

from pathlib import Path

import torch

from transferkit.errors import TransferkitError
from transferkit.finetune.functional import distillation_loss, similarity_preserving_loss
from transferkit.finetune.joint import draw_batch
from transferkit.finetune.saved import load_model
from transferkit.model import TransferModel
from transferkit.strategy import Strategy, check_number


class KD(Strategy):
    """Add ``weight * kd_loss(student, teacher, temperature)`` to the task loss (Hinton, Vinyals &
    Dean, 2015, "Distilling the Knowledge in a Neural Network"), and optionally match the features.
    The distillation term follows the teacher's task type: the softened class distributions for
    classification, each label's softened Bernoulli for multilabel, and the mean squared difference
    of the outputs for regression (no temperature: the outputs are values, not logits).

    Feature matching compares the batch similarity structure of the student's and the teacher's
    features (Tung & Mori, 2019, "Similarity-Preserving Knowledge Distillation"), so the student's
    feature width need not equal the teacher's.

    Args:
        teacher: a trained run directory (``transferkit train`` output) or a ``TransferModel``.
        temperature: softmax temperature for both models.
        weight: multiplier of the distillation term.
        feature_weight: multiplier of the feature-matching term (0: off).
        transfer_set: unlabelled inputs (``name:domain`` or a path; labels are ignored) on which the
            student also imitates the teacher, a batch per step — more to learn from than the
            labelled examples alone.
        batch_size: transfer-set examples per step.
        seed: seed of the transfer-set sampling.
    """

    name = "kd"

    def __init__(self, teacher: str | Path | TransferModel | None = None, temperature: float = 4.0,
                 weight: float = 1.0, feature_weight: float = 0.0, transfer_set: str | None = None,
                 batch_size: int = 64, seed: int = 0) -> None:
        super().__init__()
        check_number("kd", "temperature", temperature, low=1e-3)
        check_number("kd", "weight", weight, low=0.0)
        check_number("kd", "feature_weight", feature_weight, low=0.0)
        check_number("kd", "batch_size", batch_size, low=1, integer=True)
        if teacher is None:
            raise TransferkitError("kd: 'teacher' is required; give a trained run directory (args: {teacher: runs/big}).")
        if not isinstance(teacher, TransferModel):
            teacher = load_model(teacher)[1]
        teacher.eval().requires_grad_(False)
        object.__setattr__(self, "teacher", teacher)  # not a submodule: never trained nor checkpointed here
        self.temperature, self.weight, self.feature_weight = float(temperature), float(weight), float(feature_weight)
        self.transfer_set, self.batch_size, self.seed = transfer_set, int(batch_size), int(seed)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self._transfer = None

    def prepare_model(self, model):
        student, teacher = getattr(model, "task_type", None), self.teacher.task_type
        if student is not None and student.name != teacher.name:
            raise TransferkitError(f"kd: the teacher is a {teacher.name} model but the student's model.task is "
                                   f"'{student.name}'; distil a teacher trained for the same task type.")
        if self.transfer_set is not None and self._transfer is None:
            from transferkit.data import load_dataset

            self._transfer = load_dataset(self.transfer_set) if isinstance(self.transfer_set, str) else self.transfer_set
        return model

    def _imitate(self, x, out) -> dict[str, torch.Tensor]:
        """The distillation terms for student outputs ``out`` on inputs ``x``."""
        with torch.no_grad():
            teacher_out = self.teacher(x)
        if teacher_out.logits.shape != out.logits.shape:
            raise TransferkitError(f"kd: the teacher predicts {teacher_out.logits.shape[-1]} classes but the student "
                                   f"{out.logits.shape[-1]}; train both on the same label set.")
        distill = distillation_loss(self.teacher.task_type.name, out.logits, teacher_out.logits, self.temperature)
        terms = {"distill": self.weight * distill}
        if self.feature_weight:
            terms["features"] = self.feature_weight * similarity_preserving_loss(out.features, teacher_out.features)
        return terms

    def loss_terms(self, batch, out, model):
        if batch.precomputed:
            raise TransferkitError("kd cannot run on cached features; combine it with a strategy that trains on inputs.")
        device = out.logits.device
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        terms = self._imitate(batch.x, out)
        if self._transfer is not None:
            x, _ = draw_batch(self._transfer, self.batch_size, self.seed, int(self.step), device)
            self.step += 1
            terms |= {f"transfer_{k}": v for k, v in self._imitate(x, model(x)).items()}
        return terms
