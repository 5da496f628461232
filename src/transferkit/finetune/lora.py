"""LoRA through PEFT: low-rank updates on a frozen backbone's Linear / Conv layers."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from transferkit.errors import TransferkitError
from transferkit.strategy import Phase, Strategy, check_number

LORA_KEY = "lora_"


def _peft():
    try:
        import peft
    except ImportError:
        raise TransferkitError("The 'lora' strategy needs PEFT; install it with pip install transferkit[peft].") from None
    return peft


def default_targets(backbone: nn.Module) -> list[str]:
    """Every Linear and ungrouped Conv2d layer inside the backbone's stages (PEFT matches these
    names exactly).

    Layers outside ``stages()`` are left out (BERT's pooler, which ``features`` never runs: its
    update would train nothing), and so are grouped and depthwise convolutions (``groups > 1``):
    PEFT refuses them unless the rank is a multiple of ``groups`` and cannot merge them.
    """
    stages = backbone.stages() if hasattr(backbone, "stages") else [backbone]
    inside = {id(m) for stage in stages for m in stage.modules()}
    return [n for n, m in backbone.named_modules()
            if n and id(m) in inside and (isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1))]


class LoRA(Strategy):
    """Train rank-``r`` updates ``W + (alpha/r) B A`` of the backbone's layers and the head, with the
    source weights frozen (Hu et al., 2022, "LoRA"), injected with PEFT.

    Args:
        r: rank of the update.
        alpha: scaling numerator (the update is multiplied by ``alpha / r``).
        dropout: dropout on the LoRA branch.
        target_modules: layer names (or name suffixes, as PEFT matches them) to adapt; default
            every Linear and ungrouped Conv2d layer in the backbone's stages (``default_targets``).
    """

    name = "lora"
    changes_structure = True

    def __init__(self, r: int = 4, alpha: float = 8.0, dropout: float = 0.0,
                 target_modules: list[str] | None = None) -> None:
        super().__init__()
        check_number("lora", "r", r, low=1, integer=True)
        check_number("lora", "alpha", alpha, low=0.0)
        check_number("lora", "dropout", dropout, low=0.0, high=1.0)
        if target_modules is not None and not (isinstance(target_modules, list) and target_modules):
            raise TransferkitError(f"lora: 'target_modules' must be a non-empty list of layer names; got {target_modules!r}.")
        self.r, self.alpha, self.dropout, self.target_modules = int(r), float(alpha), float(dropout), target_modules

    def prepare_model(self, model):
        if any(LORA_KEY in n for n, _ in model.backbone.named_parameters()):
            return model  # already adapted (e.g. rebuilt for a resumed run)
        peft = _peft()
        targets = self.target_modules or default_targets(model.backbone)
        config = peft.LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=targets)
        try:
            model.backbone = peft.inject_adapter_in_model(config, model.backbone)
        except ValueError as e:
            raise TransferkitError(f"lora: 'target_modules' {targets} do not match layers of the backbone ({e}).") from None
        return model

    def phases(self, model, epochs, lr):
        lora = [p for n, p in model.backbone.named_parameters() if LORA_KEY in n]
        return [Phase("train", epochs, [{"params": lora, "lr": lr}, {"params": list(model.heads.parameters()), "lr": lr}])]


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA update into its base layer in place (outputs unchanged, no extra cost at inference)."""
    from peft.tuners.lora import LoraLayer

    for m in model.modules():
        if isinstance(m, LoraLayer):
            m.merge()
    return model


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the LoRA tensors or bottleneck adapters, and the heads: what a ``lora`` or ``adapters``
    run adds to its source weights."""
    return {k: v for k, v in model.state_dict().items()
            if LORA_KEY in k or k.startswith(("heads.", "backbone.adapters."))}


def save_adapter(model: nn.Module, path: str | Path) -> Path:
    """Write the adapter (LoRA tensors or bottleneck adapters, + heads) alone as safetensors."""
    from safetensors.torch import save_file

    path = Path(path)
    save_file({k: v.contiguous() for k, v in adapter_state_dict(model).items()}, str(path))
    return path


def load_adapter(model: nn.Module, path: str | Path) -> None:
    """Load a saved adapter into a model prepared with the same ``lora`` / ``adapters`` settings."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    own = model.state_dict()
    if not state or any(k not in own or own[k].shape != v.shape for k, v in state.items()):
        raise TransferkitError(f"Adapter '{path}' does not fit this model; prepare it with the same lora or adapters settings.")
    model.load_state_dict(state, strict=False)
