"""Statistics alignment: DAN (multi-kernel MMD) and Deep CORAL, and the target-only add-on terms
entropy minimisation and minimum class confusion (MCC)."""

from __future__ import annotations

from transferkit.adapt.base import DomainAdaptation
from transferkit.adapt.functional import coral_loss, entropy_loss, mcc_loss
from transferkit.metrics.domain import DAN_SCALES, mmd2
from transferkit.strategy import check_number


class DAN(DomainAdaptation):
    """Deep Adaptation Network (Long et al., ICML 2015): multi-kernel MMD (``metrics.domain.mmd2``, Gaussian
    kernels around the mean pairwise distance) between the source and target features (and, with
    ``on_logits``, between their logits too, as DAN adapts the last layers). The estimate is the biased
    quadratic one with fixed equal kernel weights (the paper: a linear-time unbiased estimate with learned
    weights), and the kernels are averaged, so ``weight`` is about 5x Transfer-Learning-Library's trade-off.

    Example:
        >>> DAN(weight=1.0)  # data.unlabelled names the target data
    """

    name = "dan"

    def __init__(self, weight: float = 1.0, on_logits: bool = False, scales: list[float] = DAN_SCALES,
                 seed: int | None = None) -> None:
        super().__init__(weight, seed)
        self.on_logits = bool(on_logits)  # also align the head's outputs (DAN adapts fc6-fc8)
        self.scales = tuple(float(s) for s in scales)  # kernel bandwidths as multiples of the mean distance
        for s in self.scales:
            check_number("DAN", "scales", s, low=1e-6)

    def loss_terms(self, batch, out, model):
        fs, ft, ls, lt = self.split(batch, out)
        mmd = mmd2(fs, ft, self.scales, bandwidth="mean")
        if self.on_logits:
            mmd = mmd + mmd2(ls, lt, self.scales, bandwidth="mean")
        return {"mmd": self.weight * mmd}


class DeepCORAL(DomainAdaptation):
    """Deep CORAL (Sun & Saenko, ECCV 2016 workshops): match the covariances of source and target
    features (the paper aligns the last layer's outputs; ``on_logits`` does that, the default aligns
    the backbone's features)."""

    name = "coral"

    def __init__(self, weight: float = 1.0, on_logits: bool = False, seed: int | None = None) -> None:
        super().__init__(weight, seed)
        self.on_logits = bool(on_logits)

    def loss_terms(self, batch, out, model):
        fs, ft, ls, lt = self.split(batch, out)
        return {"coral": self.weight * (coral_loss(ls, lt) if self.on_logits else coral_loss(fs, ft))}


class EntropyMin(DomainAdaptation):
    """Entropy minimisation on the target predictions (Grandvalet & Bengio, NeurIPS 2004); an add-on term
    (``dann+entropy``)."""

    name = "entropy"

    def __init__(self, weight: float = 0.1, seed: int | None = None) -> None:
        super().__init__(weight, seed)

    def loss_terms(self, batch, out, model):
        return {"entropy": self.weight * entropy_loss(self.split(batch, out)[3])}


class MCC(DomainAdaptation):
    """Minimum class confusion (Jin et al., ECCV 2020) on the target predictions; alone or as an add-on
    term (``dann+mcc``)."""

    name = "mcc"

    def __init__(self, weight: float = 1.0, temperature: float = 2.5, seed: int | None = None) -> None:
        super().__init__(weight, seed)
        check_number("MCC", "temperature", temperature, low=1e-6)
        self.temperature = float(temperature)  # softmax temperature of the class correlations

    def loss_terms(self, batch, out, model):
        return {"mcc": self.weight * mcc_loss(self.split(batch, out)[3], self.temperature)}
