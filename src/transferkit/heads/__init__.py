"""Head registry: the g in f(x) = g(h(x)), mapping features to class logits."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from transferkit.errors import TransferkitError
from transferkit.registry import Registry

HEADS: Registry[Callable[..., nn.Module]] = Registry("head")


class LinearHead(nn.Sequential):
    """``Sequential(Dropout, Linear)`` that skips the dropout call when its rate is 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self[1](self[0](x) if self[0].p else x)


@HEADS.register("linear")
def linear(in_features: int, num_classes: int, dropout: float = 0.0, init: str = "default") -> nn.Module:
    """A single linear layer (with optional dropout before it); ``init="xavier"``: Glorot-uniform
    weights and zero bias."""
    layer = nn.Linear(in_features, num_classes)
    if init == "xavier":
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
    elif init != "default":
        raise TransferkitError(f"linear head: 'init' must be 'default' or 'xavier'; got {init!r}.")
    return LinearHead(nn.Dropout(dropout), layer)


@HEADS.register("bottleneck")
def bottleneck(in_features: int, num_classes: int, width: int = 256, dropout: float = 0.5) -> nn.Module:
    """Linear -> BatchNorm -> ReLU -> Dropout -> Linear, as in DANN/CDAN-style heads."""
    return nn.Sequential(
        nn.Linear(in_features, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, num_classes)
    )


def create_head(name: str, in_features: int, num_classes: int, **kwargs) -> nn.Module:
    """Build a head by name with ``num_classes`` outputs (classes, or values for regression; at least 1)."""
    if num_classes < 1:
        raise TransferkitError(f"A head needs at least 1 output; got num_classes={num_classes}. Check the targets.")
    factory = HEADS.get(name)
    try:
        return factory(in_features, num_classes, **kwargs)
    except TypeError as e:
        raise TransferkitError(f"Head '{name}' got a wrong argument ({e}); see `transferkit list heads`.") from None
