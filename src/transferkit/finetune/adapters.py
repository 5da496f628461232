"""Residual bottleneck adapters inserted after backbone stages; the backbone stays frozen."""

from __future__ import annotations

import torch
from torch import nn

from transferkit.errors import TransferkitError
from transferkit.strategy import Phase, Strategy, check_number


class Bottleneck(nn.Module):
    """``x + up(relu(down(x)))`` over the channel axis, with ``up`` zero-initialised so that an
    inserted adapter starts as the identity (Houlsby et al., 2019; Rebuffi et al., 2017 for CNNs).

    Shape:
        x: ``[B, C, H, W]`` (1x1 convolutions) or ``[B, ..., C]`` (linear layers).
    """

    def __init__(self, channels: int, width: int, conv: bool) -> None:
        super().__init__()
        layer = (lambda i, o: nn.Conv2d(i, o, 1)) if conv else nn.Linear
        self.down, self.up = layer(channels, width), layer(width, channels)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(torch.relu(self.down(x)))


def _out_channels(stage: nn.Module) -> tuple[int, bool]:
    """Channels of a stage's output and whether it is a conv feature map (from its last layer)."""
    for m in reversed(list(stage.modules())):
        if isinstance(m, nn.Conv2d):
            return m.out_channels, True
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.BatchNorm1d):
            return m.num_features, True
        if isinstance(m, nn.Linear):
            return m.out_features, False
    raise TransferkitError(f"adapters: cannot tell the output size of stage {type(stage).__name__}; "
                           "choose other stages with 'stages'.")


def _hook(adapter: Bottleneck):
    def apply(module, inputs, output):
        if isinstance(output, tuple):  # transformer layers return (hidden_states, ...)
            return (adapter(output[0]), *output[1:])
        return adapter(output)
    return apply


class Adapters(Strategy):
    """Insert a bottleneck adapter after each of the last ``stages`` backbone stages and train only
    the adapters and the head.

    Args:
        reduction: channels / adapter width.
        stages: how many backbone stages, counted from the output, get an adapter.
    """

    name = "adapters"
    changes_structure = True

    def __init__(self, reduction: int = 8, stages: int = 2) -> None:
        super().__init__()
        check_number("adapters", "reduction", reduction, low=1, integer=True)
        check_number("adapters", "stages", stages, low=1, integer=True)
        self.reduction, self.n_stages = int(reduction), int(stages)

    def prepare_model(self, model):
        bb = model.backbone
        if hasattr(bb, "adapters"):
            return model
        chosen = bb.stages()[-self.n_stages:]
        bb.adapters = nn.ModuleList()
        for stage in chosen:
            channels, conv = _out_channels(stage)
            adapter = Bottleneck(channels, max(1, channels // self.reduction), conv)
            bb.adapters.append(adapter)
            stage.register_forward_hook(_hook(adapter))
        return model

    def phases(self, model, epochs, lr):
        return [Phase("train", epochs, [{"params": list(model.backbone.adapters.parameters()), "lr": lr},
                                        {"params": list(model.heads.parameters()), "lr": lr}])]
