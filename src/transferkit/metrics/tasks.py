"""Pure metric functions of the task types: macro-F1, multi-label average precision and micro-F1,
mean absolute error and R². Each follows scikit-learn's definition (checked against it in the tests)."""

from __future__ import annotations

import torch


def macro_f1(pred: torch.Tensor, targets: torch.Tensor) -> float:
    """The unweighted mean over classes of ``F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)``, over the classes
    that occur in ``targets`` or ``pred`` (as ``sklearn.metrics.f1_score(average="macro")``).

    Shape:
        pred, targets: ``[N]`` class indices.
    """
    if len(targets) == 0:
        return float("nan")
    n = int(max(int(pred.max()), int(targets.max()))) + 1
    tp = torch.bincount(targets[pred == targets], minlength=n).double()
    predicted = torch.bincount(pred, minlength=n).double()
    actual = torch.bincount(targets, minlength=n).double()
    present = (predicted + actual) > 0
    f1 = 2 * tp[present] / (predicted[present] + actual[present])  # 2TP + FP + FN = predicted + actual
    return float(f1.mean())


def micro_f1(pred: torch.Tensor, targets: torch.Tensor) -> float:
    """``2 TP / (2 TP + FP + FN)`` over every (row, label) entry of a multi-label prediction; 0 when
    nothing is predicted or true (as ``sklearn.metrics.f1_score(average="micro")``).

    Shape:
        pred, targets: ``[N, C]`` in {0, 1}.
    """
    pred, targets = pred.bool(), targets.bool()
    tp = (pred & targets).sum().double()
    denom = pred.sum().double() + targets.sum().double()
    return float(2 * tp / denom) if denom > 0 else 0.0


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per label, ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds taken in
    decreasing order (tied scores form one threshold), as ``sklearn.metrics.average_precision_score``;
    a label with no positive example gets 0, as in scikit-learn.

    Shape:
        scores: ``[N, C]``; targets: ``[N, C]`` in {0, 1}; returns ``[C]``.
    """
    out = torch.zeros(scores.shape[1], dtype=torch.float64)
    for c in range(scores.shape[1]):
        s, order = torch.sort(scores[:, c].double(), descending=True, stable=True)
        y = targets[order, c].double()
        positives = y.sum()
        if positives == 0:
            continue
        last = torch.cat([(s[1:] != s[:-1]).nonzero().flatten(), torch.tensor([len(s) - 1])])  # end of each tie group
        tp = torch.cumsum(y, 0)[last]
        precision = tp / (last + 1).double()
        recall = tp / positives
        out[c] = ((recall - torch.cat([recall.new_zeros(1), recall[:-1]])) * precision).sum()
    return out


def mean_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Macro mean over the labels of ``average_precision`` (``average_precision_score(average="macro")``).

    Shape:
        scores, targets: ``[N, C]``.
    """
    return float(average_precision(scores, targets).mean()) if len(targets) else float("nan")


def mae(pred: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean absolute error over every entry. Shape: pred, targets ``[N]`` or ``[N, k]``."""
    return float((pred.double() - targets.double()).abs().mean()) if len(targets) else float("nan")


def r2(pred: torch.Tensor, targets: torch.Tensor) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` per target column, averaged over the columns
    (``sklearn.metrics.r2_score``; a constant column scores 1 if predicted exactly, else 0).

    Shape:
        pred, targets: ``[N]`` or ``[N, k]``.
    """
    if len(targets) == 0:
        return float("nan")
    p, y = pred.double().reshape(len(targets), -1), targets.double().reshape(len(targets), -1)
    ss_res = ((y - p) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    score = torch.where(ss_tot > 0, 1 - ss_res / ss_tot.clamp_min(1e-300), (ss_res == 0).double())
    return float(score.mean())
