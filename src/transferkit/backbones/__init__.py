"""Backbone registry: ``create_backbone(name, weights=None|PATH, **kwargs) -> Backbone``.

Names: built-in small nets (``mlp``, ``small_cnn``), torchvision architectures
(``resnet18`` …; ``weights="imagenet"`` reads the torch hub cache), ``hf_text``
(a local Hugging Face folder as ``weights``), and ``timm/<model>`` for any timm model.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Callable

from transferkit.backbones.base import Backbone
from transferkit.backbones.fusion import FusionBackbone
from transferkit.backbones.hf import HFTextEncoder, minilm_path
from transferkit.backbones.small import MLP, Conv4, SmallCNN
from transferkit.backbones.timm_nets import TimmBackbone
from transferkit.backbones.tv import ARCHS, TorchvisionBackbone, resolve_imagenet
from transferkit.backbones.weights import download_weights, load_into, read_state_dict
from transferkit.errors import TransferkitError
from transferkit.registry import Registry, check_kwargs

BACKBONES: Registry[Callable[..., Backbone]] = Registry("backbone")
BACKBONES.register("mlp")(MLP)
BACKBONES.register("small_cnn")(SmallCNN)
BACKBONES.register("conv4")(Conv4)
for _arch in ARCHS:
    BACKBONES.register(_arch, help=f"torchvision {_arch} (weights: PATH or 'imagenet' from the torch cache)")(
        lambda _a=_arch: TorchvisionBackbone(_a)
    )


def _hf_text(path: str | Path | None = None, pooling: str = "mean", max_length: int = 128) -> HFTextEncoder:
    """Hugging Face text encoder from a local folder (weights=DIR); default: the packaged MiniLM-L6."""
    return HFTextEncoder(path or minilm_path(), pooling=pooling, max_length=max_length)


BACKBONES.register("hf_text")(_hf_text)


def _fusion(sources: list[dict] | None = None, dim: int | None = None) -> FusionBackbone:
    """Several source backbones mixed with learned weights (sources: [{backbone, weights, args}, ...])."""
    if not sources or not isinstance(sources, list):
        raise TransferkitError("fusion: 'sources' must be a list like [{backbone: small_cnn, weights: a.safetensors}, ...].")
    built = []
    for i, spec in enumerate(sources):
        if not isinstance(spec, dict) or "backbone" not in spec or set(spec) - {"backbone", "weights", "args"}:
            raise TransferkitError(f"fusion: source {i} must be a mapping with 'backbone' and optional 'weights', "
                                   f"'args'; got {spec!r}.")
        built.append(create_backbone(spec["backbone"], weights=spec.get("weights"), **spec.get("args", {})))
    return FusionBackbone(built, dim=dim)


BACKBONES.register("fusion")(_fusion)


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered backbone names matching a glob pattern (``timm/<name>`` works for any timm model)."""
    return BACKBONES.names(pattern)


def create_backbone(name: str, weights: str | Path | None = None, **kwargs) -> Backbone:
    """Build a backbone by name and load ``weights`` (a file, a folder for ``hf_text``, or ``"imagenet"``).

    Example:
        >>> bb = create_backbone("small_cnn", in_channels=1)
        >>> bb.num_features
        128
    """
    if name.startswith("timm/"):
        factory: Callable[..., Backbone] = lambda **kw: TimmBackbone(name[len("timm/"):], **kw)  # noqa: E731
        check_kwargs(f"Backbone '{name}'", TimmBackbone.__init__, kwargs, hidden=("name",))
    else:
        factory = BACKBONES.get(name)
        check_kwargs(f"Backbone '{name}'", factory, kwargs, hidden=("path",))
    if name == "hf_text" and not (weights is not None and Path(weights).is_file()):
        return factory(path=weights, **kwargs)  # a Hugging Face folder (or the packaged MiniLM)
    backbone = factory(**kwargs)  # for hf_text, a weights file is a fine-tuned run's model.safetensors
    if weights is not None:
        if weights == "imagenet":
            if name not in ARCHS:
                raise TransferkitError(f"weights='imagenet' is only known for {', '.join(ARCHS)}; give a weights file for '{name}'.")
            weights = resolve_imagenet(name)
            state = read_state_dict(weights)
            load_into(backbone.net, state, f"backbone '{name}'", str(weights))
        else:
            state = read_state_dict(weights)
            target = backbone.net if isinstance(backbone, (TorchvisionBackbone, TimmBackbone)) and not any(
                k.startswith(("net.", "backbone.net.")) for k in state) else backbone
            load_into(target, state, f"backbone '{name}'", str(weights))
    return backbone


__all__ = ["BACKBONES", "Backbone", "FusionBackbone", "create_backbone", "list_backbones", "download_weights", "read_state_dict", "load_into"]
