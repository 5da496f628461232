"""Adversarial alignment: DANN and CDAN (+E), a domain discriminator trained through gradient reversal."""

from __future__ import annotations

import torch
from torch import nn

from transferkit.adapt.base import DomainAdaptation
from transferkit.adapt.functional import dann_coefficient, domain_loss, entropy, multilinear_map
from transferkit.strategy import check_number


def discriminator(in_features: int, hidden: int) -> nn.Module:
    """The domain classifier of DANN / CDAN: two hidden layers with ReLU and dropout, one logit."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, 1))


class DANN(DomainAdaptation):
    """Domain-adversarial training (Ganin et al., JMLR 2016): a discriminator tells source from target
    features, and the backbone receives its gradient reversed, scaled by the warm-up
    ``2 / (1 + exp(-10 p)) - 1`` of training progress ``p``. The term is ``weight`` x the discriminator's
    cross-entropy; the discriminator (two hidden layers of ``hidden``; the paper's Office nets use 1,024)
    trains at the base learning rate, without the paper's learning-rate annealing.

    Example:
        >>> DANN(weight=1.0, hidden=256)
    """

    name = "dann"

    def __init__(self, weight: float = 1.0, hidden: int = 256, schedule: bool = True, seed: int | None = None) -> None:
        super().__init__(weight, seed)
        check_number("DANN", "hidden", hidden, low=1, integer=True)
        self.hidden = hidden  # width of the discriminator's hidden layers
        self.schedule = bool(schedule)  # warm the reversal coefficient up from 0 to 1 (else always 1)
        self.disc: nn.Module | None = None

    def discriminator_input(self, model) -> int:
        return model.backbone.num_features

    def prepare_model(self, model):
        model = super().prepare_model(model)
        if self.disc is None:
            self.disc = discriminator(self.discriminator_input(model), self.hidden)
        return model

    def coefficient(self, progress: float) -> float:
        return dann_coefficient(progress) if self.schedule else 1.0

    def loss_terms(self, batch, out, model):
        fs, ft, _, _ = self.split(batch, out)
        return {"domain": self.weight * domain_loss(self.disc, fs, ft, self.coefficient(batch.progress))}


class CDAN(DANN):
    """Conditional domain-adversarial network (Long et al., NeurIPS 2018): the discriminator sees the
    multilinear map of features and class probabilities (randomised, ``random_dim`` wide, when ``D x C``
    exceeds ``random_above``); with ``entropy_conditioning`` (CDAN+E) rows are weighted by
    ``1 + exp(-H(p))``, so confident predictions count more. The probabilities, and so the weights, are
    detached (as Transfer-Learning-Library; the original code reverses the gradient through the entropy)."""

    name = "cdan"

    def __init__(self, weight: float = 1.0, hidden: int = 256, entropy_conditioning: bool = False,
                 random_dim: int = 1024, random_above: int = 4096, schedule: bool = True, seed: int | None = None) -> None:
        super().__init__(weight, hidden, schedule, seed)
        check_number("CDAN", "random_dim", random_dim, low=1, integer=True)
        check_number("CDAN", "random_above", random_above, low=1, integer=True)
        self.entropy_conditioning = bool(entropy_conditioning)
        self.random_dim = random_dim  # the randomised map's width
        self.random_above = random_above  # D x C above which the map is randomised

    def discriminator_input(self, model) -> int:
        d, c = model.backbone.num_features, _outputs(model)
        if d * c > self.random_above:  # fixed random projections, kept (and checkpointed) as buffers
            g = torch.Generator().manual_seed(self.seed)
            self.register_buffer("rf", torch.randn(d, self.random_dim, generator=g))
            self.register_buffer("rg", torch.randn(c, self.random_dim, generator=g))
            return self.random_dim
        return d * c

    def fixed_state_keys(self) -> set[str]:
        return {k for k in ("rf", "rg") if hasattr(self, k)}

    def loss_terms(self, batch, out, model):
        fs, ft, ls, lt = self.split(batch, out)
        ps, pt = torch.softmax(ls, -1).detach(), torch.softmax(lt, -1).detach()
        rand = (self.rf, self.rg) if hasattr(self, "rf") else None
        hs, ht = multilinear_map(fs, ps, rand), multilinear_map(ft, pt, rand)
        ws = wt = None
        if self.entropy_conditioning:
            ws, wt = 1.0 + torch.exp(-entropy(ps)), 1.0 + torch.exp(-entropy(pt))
        return {"domain": self.weight * domain_loss(self.disc, hs, ht, self.coefficient(batch.progress), ws, wt)}


class CDANE(CDAN):
    """CDAN+E (Long et al., NeurIPS 2018): CDAN with entropy conditioning."""

    name = "cdan_e"

    def __init__(self, weight: float = 1.0, hidden: int = 256, random_dim: int = 1024, random_above: int = 4096,
                 schedule: bool = True, seed: int | None = None) -> None:
        super().__init__(weight, hidden, True, random_dim, random_above, schedule, seed)


def _outputs(model) -> int:
    """The width of the default head's output (its last Linear layer)."""
    return [m for m in model.heads[model.default_task].modules() if isinstance(m, nn.Linear)][-1].out_features
