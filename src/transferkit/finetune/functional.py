"""Pure functions for fine-tuning regularisers and layer-wise schedules."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F


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


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0,
            t2_scaling: bool = True) -> torch.Tensor:
    """Hinton et al. (2015) distillation loss: ``T^2 * KL(softmax(t/T) || softmax(s/T))``, batch mean.

    The ``T^2`` factor keeps gradient sizes comparable across temperatures (Hinton et al.);
    ``t2_scaling=False`` leaves it out, as Learning without Forgetting (Li & Hoiem, 2016) and its
    reference implementations (Mammoth, Avalanche) do.

    Shape:
        student_logits, teacher_logits: ``[B, C]``; returns a scalar.
    """
    t = temperature
    log_p_s = torch.log_softmax(student_logits / t, dim=-1)
    log_p_t = torch.log_softmax(teacher_logits.detach() / t, dim=-1)
    kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    return (t * t) * kl if t2_scaling else kl


def binary_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0,
                   t2_scaling: bool = True) -> torch.Tensor:
    """Distillation for multi-label outputs: each label's softened Bernoulli ``sigmoid(z / T)``,
    ``T^2 * sum_labels KL(Bern(sigmoid(t/T)) || Bern(sigmoid(s/T)))``, batch mean (Hinton et al.'s loss
    with a sigmoid per label in place of the softmax over classes; ``t2_scaling=False`` leaves out
    the ``T^2``, as ``kd_loss`` does for LwF).

    Shape:
        student_logits, teacher_logits: ``[B, C]``; returns a scalar.
    """
    t = temperature
    s_logits, t_logits = student_logits / t, teacher_logits.detach() / t
    p_t = torch.sigmoid(t_logits)
    cross = F.binary_cross_entropy_with_logits(s_logits, p_t, reduction="none")  # H(p_t, p_s)
    entropy = F.binary_cross_entropy_with_logits(t_logits, p_t, reduction="none")  # H(p_t)
    kl = (cross - entropy).sum(-1).mean()
    return (t * t) * kl if t2_scaling else kl


def output_mse(student_out: torch.Tensor, teacher_out: torch.Tensor, temperature: float | None = None) -> torch.Tensor:
    """Distillation for regression: the mean squared difference of the student's and the (fixed)
    teacher's predicted values; ``temperature`` is ignored (values are not softened).

    Shape:
        student_out, teacher_out: ``[B, k]``; returns a scalar.
    """
    return F.mse_loss(student_out, teacher_out.detach())


def distillation_loss(task: str, student_out: torch.Tensor, teacher_out: torch.Tensor, temperature: float,
                      t2_scaling: bool = True) -> torch.Tensor:
    """The distillation term of a head of task type ``task`` (KD's and LwF's): ``kd_loss`` for
    ``classification``, ``binary_kd_loss`` for ``multilabel`` and ``output_mse`` for ``regression``
    (values are not softened, so ``temperature`` and ``t2_scaling`` do not apply).

    Shape:
        student_out, teacher_out: ``[B, C]``; returns a scalar.
    """
    if task == "classification":
        return kd_loss(student_out, teacher_out, temperature, t2_scaling)
    if task == "multilabel":
        return binary_kd_loss(student_out, teacher_out, temperature, t2_scaling)
    if task == "regression":
        return output_mse(student_out, teacher_out)
    raise ValueError(f"no distillation term for task type {task!r}")


def feature_map_distance(maps: list[torch.Tensor], source_maps: list[torch.Tensor],
                         channel_weights: list[torch.Tensor] | None = None) -> torch.Tensor:
    """DELTA's behavioural regulariser (Li et al., 2019, "DELTA: Deep Learning Transfer using Feature
    Map with Attention"): ``sum_layers sum_channels w_c * ||FM_c - FM_c^src||^2``, averaged over the
    batch and the spatial positions. With ``channel_weights=None`` every channel weighs 1 (the
    paper's "without attention" variant). Zero when the feature maps equal the source's.

    Shape:
        maps[i], source_maps[i]: ``[B, C, ...]`` (channels second); channel_weights[i]: ``[C]``.
    """
    terms = []
    for i, (m, s) in enumerate(zip(maps, source_maps)):
        sq = (m.float() - s.detach().float()).pow(2)
        per_channel = sq.flatten(2).mean(-1) if sq.ndim > 2 else sq  # [B, C]
        if channel_weights is not None:
            per_channel = per_channel * channel_weights[i]
        terms.append(per_channel.sum(1).mean())
    return torch.stack(terms).sum() if terms else torch.zeros(())


def similarity_preserving_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Similarity-preserving distillation (Tung & Mori, 2019): match the row-normalised batch Gram
    matrices ``normalize(F F^T)`` of student and teacher features, so the two may have different widths.
    ``||G_s - G_t||_F^2 / B^2``; zero when the features agree up to scale.

    Shape:
        student: ``[B, D_s]``; teacher: ``[B, D_t]``; returns a scalar.
    """
    s, t = student.flatten(1).float(), teacher.detach().flatten(1).float()
    g_s = torch.nn.functional.normalize(s @ s.T, dim=1)
    g_t = torch.nn.functional.normalize(t @ t.T, dim=1)
    return (g_s - g_t).pow(2).sum() / s.shape[0] ** 2
