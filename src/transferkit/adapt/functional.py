"""The maths of deep domain adaptation as pure functions of tensors.

Each function cites its paper; the strategies in this package are thin holders of state around them.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

def covariance(x: torch.Tensor) -> torch.Tensor:
    """Unbiased covariance of the rows of ``x`` (``[n, D]`` -> ``[D, D]``)."""
    centred = x - x.mean(0, keepdim=True)
    return centred.T @ centred / max(len(x) - 1, 1)


def coral_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Deep CORAL (Sun & Saenko, ECCV 2016 workshops): ``||C_s - C_t||_F^2 / (4 d^2)``, the distance of
    the two domains' feature covariances.

    Shape:
        x: ``[n, d]`` source, y: ``[m, d]`` target -> scalar.
    """
    d = x.shape[1]
    return (covariance(x) - covariance(y)).pow(2).sum() / (4 * d * d)


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, coeff: float):
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.coeff * grad, None


def reverse_gradient(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """Gradient reversal (Ganin & Lempitsky, ICML 2015): the identity forward; backward the gradient
    times ``-coeff``."""
    return _ReverseGradient.apply(x, coeff)


def dann_coefficient(progress: float, gamma: float = 10.0) -> float:
    """DANN's warm-up of the reversal coefficient, ``2 / (1 + exp(-gamma p)) - 1`` for training progress
    ``p`` in [0, 1] (Ganin et al., JMLR 2016, section 5.2.2)."""
    return 2.0 / (1.0 + math.exp(-gamma * min(max(progress, 0.0), 1.0))) - 1.0


def entropy(probs: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-row Shannon entropy of probabilities (``[B, C]`` -> ``[B]``)."""
    return -(probs * torch.log(probs + eps)).sum(-1)


def entropy_loss(logits: torch.Tensor) -> torch.Tensor:
    """Entropy minimisation (Grandvalet & Bengio, NeurIPS 2004): the mean entropy of the softmax."""
    return entropy(torch.softmax(logits, -1)).mean()


def mcc_loss(logits: torch.Tensor, temperature: float = 2.5) -> torch.Tensor:
    """Minimum class confusion (Jin et al., "Minimum Class Confusion for Versatile Domain Adaptation",
    ECCV 2020): probabilities at ``temperature``, rows weighted by ``1 + exp(-H)`` (normalised to sum to
    the batch size), class correlation ``C = P^T W P``, each column normalised to sum to one; the loss
    is the sum of the off-diagonal entries over the number of classes.

    Shape:
        logits: ``[B, C]`` target logits -> scalar.
    """
    b, c = logits.shape
    p = torch.softmax(logits / temperature, -1)
    w = 1.0 + torch.exp(-entropy(p).detach())
    w = b * w / w.sum()
    corr = p.T @ (w[:, None] * p)
    corr = corr / corr.sum(0, keepdim=True)
    return (corr.sum() - torch.trace(corr)) / c


def classifier_discrepancy(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """MCD's discrepancy (Saito et al., CVPR 2018, eq. 1): the mean absolute difference of the two
    classifiers' softmax probabilities (over rows and classes)."""
    return (torch.softmax(a, -1) - torch.softmax(b, -1)).abs().mean()


def multilinear_map(features: torch.Tensor, probs: torch.Tensor,
                    random: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """CDAN's conditioning (Long et al., NeurIPS 2018, eq. 4-5): the outer product ``f (x) g`` flattened,
    or with ``random = (R_f, R_g)`` the randomised map ``(R_f f) * (R_g g) / sqrt(d)``.

    Shape:
        features: ``[B, D]``, probs: ``[B, C]`` -> ``[B, D * C]`` (randomised: ``[B, d]``).
    """
    if random is None:
        return torch.bmm(probs.unsqueeze(2), features.unsqueeze(1)).flatten(1)
    rf, rg = random
    return (features @ rf) * (probs @ rg) / math.sqrt(rf.shape[1])


def domain_loss(discriminator: nn.Module, src: torch.Tensor, tgt: torch.Tensor, coeff: float,
                src_weight: torch.Tensor | None = None, tgt_weight: torch.Tensor | None = None) -> torch.Tensor:
    """The adversarial domain loss of DANN / CDAN: binary cross-entropy of ``discriminator`` telling source
    (1) from target (0) on inputs that pass a gradient reversal of ``coeff``. Optional per-row weights
    (CDAN+E) are normalised within each domain, and the loss is their weighted mean.

    Shape:
        src: ``[n, D]``, tgt: ``[m, D]`` -> scalar.
    """
    z = reverse_gradient(torch.cat([src, tgt]), coeff)
    logit = discriminator(z).squeeze(-1)
    label = torch.cat([torch.ones(len(src), device=z.device), torch.zeros(len(tgt), device=z.device)])
    bce = F.binary_cross_entropy_with_logits(logit, label, reduction="none")
    if src_weight is None:
        return bce.mean()
    w = torch.cat([src_weight / src_weight.sum(), tgt_weight / tgt_weight.sum()])
    return (w * bce).sum() / w.sum()
