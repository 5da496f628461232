"""Pure functions for fine-tuning regularisers and layer-wise schedules."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def l2sp_penalty(params: Iterable[torch.Tensor], anchors: Iterable[torch.Tensor]) -> torch.Tensor:
    """Squared distance to the source weights, ``sum ||w - w0||^2`` (Li et al., 2018, L2-SP).

    Zero at the source weights; the caller multiplies by ``weight / 2``.
    """
    terms = [(p - a).pow(2).sum() for p, a in zip(params, anchors)]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def bss_penalty(features: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Batch spectral shrinkage: the sum of the ``k`` smallest squared singular values of a
    feature batch (Chen et al., 2019, "Catastrophic Forgetting Meets Negative Transfer").

    Shape:
        features: ``[B, D]``; returns a scalar.
    """
    s = torch.linalg.svdvals(features.float())  # descending
    k = min(k, s.numel())
    return s[-k:].pow(2).sum()


def layerwise_lrs(n_stages: int, lr: float, decay: float) -> list[float]:
    """Learning rates for stages ordered input -> output: the last gets ``lr * decay``, the one
    before ``lr * decay**2``, and so on (the head keeps ``lr``; Howard & Ruder, 2018, ULMFiT).
    """
    return [lr * decay ** (n_stages - i) for i in range(n_stages)]


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """Hinton et al. (2015) distillation loss: ``T^2 * KL(softmax(t/T) || softmax(s/T))``, batch mean.

    The ``T^2`` factor keeps gradient sizes comparable across temperatures.

    Shape:
        student_logits, teacher_logits: ``[B, C]``; returns a scalar.
    """
    t = temperature
    log_p_s = torch.log_softmax(student_logits / t, dim=-1)
    log_p_t = torch.log_softmax(teacher_logits.detach() / t, dim=-1)
    return (t * t) * torch.sum(log_p_t.exp() * (log_p_t - log_p_s), dim=-1).mean()
