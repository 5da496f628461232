"""torchvision architectures as backbones; weights only from a local file or the torch hub cache."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from transferkit.backbones.base import Backbone
from transferkit.errors import TransferkitError

# name -> (torchvision builder, weights enum name, attribute holding the classifier)
ARCHS = {
    "resnet18": ("resnet18", "ResNet18_Weights", "fc"),
    "resnet50": ("resnet50", "ResNet50_Weights", "fc"),
    "vgg16": ("vgg16", "VGG16_Weights", "classifier"),
    "mobilenet_v3_small": ("mobilenet_v3_small", "MobileNet_V3_Small_Weights", "classifier"),
    "mobilenet_v3_large": ("mobilenet_v3_large", "MobileNet_V3_Large_Weights", "classifier"),
    "efficientnet_b0": ("efficientnet_b0", "EfficientNet_B0_Weights", "classifier"),
}


def imagenet_weights_file(arch: str) -> tuple[Path, str]:
    """Where torchvision's ImageNet weights for ``arch`` sit in the torch hub cache, and their URL."""
    import torchvision.models as tvm

    url = getattr(tvm, ARCHS[arch][1]).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1], url


class TorchvisionBackbone(Backbone):
    """A torchvision classifier with its classification layer removed.

    For VGG and MobileNet the classifier's hidden layers are kept and only the last
    ``Linear`` is dropped, so ``num_features`` is the width of the penultimate layer.
    """

    input_kind = "image"

    def __init__(self, arch: str) -> None:
        import torchvision.models as tvm

        super().__init__()
        builder, _, head_attr = ARCHS[arch]
        self.net = getattr(tvm, builder)(weights=None)
        head = getattr(self.net, head_attr)
        if isinstance(head, nn.Sequential):  # keep hidden layers, drop the final Linear
            self.num_features = head[-1].in_features
            head[-1] = nn.Identity()
        else:
            self.num_features = head.in_features
            setattr(self.net, head_attr, nn.Identity())
        self.arch = arch

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def stages(self) -> list[nn.Module]:
        if hasattr(self.net, "features"):  # VGG, MobileNet, EfficientNet: each feature block, then hidden layers
            blocks = [*self.net.features, *getattr(self.net, "classifier", [])]
            return [m for m in blocks if any(True for _ in m.parameters())]
        return super().stages()


def resolve_imagenet(arch: str) -> Path:
    """The cached ImageNet weights for ``arch``, or an error saying how to get them."""
    path, url = imagenet_weights_file(arch)
    if not path.is_file():
        raise TransferkitError(
            f"ImageNet weights for '{arch}' are not in the torch cache ('{path}'); download them once with "
            f"`transferkit download-weights {arch}` (from {url}) or pass weights=PATH to a local file."
        )
    return path
