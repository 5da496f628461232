"""Built-in small backbones for vectors and small images (16x16, 28x28)."""

from __future__ import annotations

import torch
from torch import nn

from transferkit.backbones.base import Backbone
from transferkit.errors import TransferkitError


class MLP(Backbone):
    """A multi-layer perceptron on flattened inputs.

    Args:
        in_features: size of the flattened input.
        hidden: widths of the hidden layers; the last one is ``num_features``.
        dropout: dropout after each hidden layer.
        init: ``"default"`` (PyTorch's) or ``"xavier"`` (Glorot-uniform weights, zero biases, as in
            the continual-learning MNIST protocols of Buzzega et al., 2020).
    """

    input_kind = "vector"

    def __init__(self, in_features: int = 256, hidden: tuple[int, ...] = (256, 128), dropout: float = 0.0,
                 init: str = "default") -> None:
        super().__init__()
        if init not in ("default", "xavier"):
            raise TransferkitError(f"mlp: 'init' must be 'default' or 'xavier'; got {init!r}.")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        self.blocks = nn.Sequential(*layers)
        self.num_features = width
        if init == "xavier":
            for m in self.blocks:
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.blocks:
            if not (isinstance(layer, nn.Dropout) and layer.p == 0):  # a no-op module call costs more than the maths at batch 10
                x = layer(x)
        return x


def _conv_block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class SmallCNN(Backbone):
    """Three conv blocks and a projection, for 16x16 to 32x32 images (any size works).

    Args:
        in_channels: 1 for grey digits, 3 for RGB.
        width: channels of the first block (doubled in each later block).
        num_features: size of the output feature vector.
        dropout: dropout before the projection.
    """

    input_kind = "image"

    def __init__(self, in_channels: int = 1, width: int = 32, num_features: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            _conv_block(in_channels, width, pool=True),
            _conv_block(width, 2 * width, pool=True),
            _conv_block(2 * width, 4 * width, pool=False),
        )
        self.pool = nn.AdaptiveAvgPool2d(2)  # keeps coarse layout, size-independent
        self.proj = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(16 * width, num_features), nn.ReLU())
        self.num_features = num_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(self.blocks(x)))

    def stages(self) -> list[nn.Module]:
        return [*self.blocks, self.proj]


class Conv4(Backbone):
    """The four-block embedding of Matching Networks (Vinyals et al., 2016), used by MAML and
    Prototypical Networks: 4 x [3x3 conv (``width`` channels), batch norm, ReLU, 2x2 max-pool],
    flattened (64 features for 28x28 Omniglot, 1600 for 84x84 images).

    Args:
        in_channels: 1 for grey images, 3 for RGB.
        width: channels of every block (64 in the papers).
        image_size: the side of the square input images (sets ``num_features``).
    """

    input_kind = "image"

    def __init__(self, in_channels: int = 1, width: int = 64, image_size: int = 28) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(_conv_block(in_channels if i == 0 else width, width, pool=True)
                                      for i in range(4)))
        side = image_size
        for _ in range(4):
            side //= 2
        if side < 1:
            raise TransferkitError(f"conv4: 'image_size' must be at least 16 (four 2x2 poolings); got {image_size}.")
        self.num_features = width * side * side

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x).flatten(1)

    def stages(self) -> list[nn.Module]:
        return list(self.blocks)
