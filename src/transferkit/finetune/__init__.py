"""Fine-tuning strategies: a registry of small composable modules (see ``base.py`` for the hooks)."""

from __future__ import annotations

from transferkit.adapt import DEEP_METHODS
from transferkit.finetune.adapters import Adapters
from transferkit.strategy import Batch, Compose, Phase, Strategy
from transferkit.finetune.bss import BSS
from transferkit.finetune.delta import DELTA
from transferkit.finetune.discriminative import Discriminative
from transferkit.finetune.fusion import Fusion
from transferkit.finetune.joint import Joint
from transferkit.finetune.kd import KD
from transferkit.finetune.l2sp import L2SP
from transferkit.finetune.lora import LoRA, load_adapter, merge_lora, save_adapter
from transferkit.finetune.partial import PartialFineTune
from transferkit.finetune.feature_extraction import FeatureExtraction, extract_features
from transferkit.finetune.full import FullFineTune
from transferkit.finetune.scratch import FromScratch
from transferkit.finetune.two_stage import TwoStage
from transferkit.registry import Registry

STRATEGIES: Registry[type[Strategy]] = Registry("strategy")
for _cls in (FromScratch, FeatureExtraction, FullFineTune, TwoStage, PartialFineTune, Discriminative, L2SP, DELTA, BSS,
             LoRA, Adapters, KD, Fusion, Joint, *DEEP_METHODS):
    STRATEGIES.register(_cls.name)(_cls)


def create_strategy(spec: str | list[str], **kwargs) -> Strategy:
    """A strategy by name; a list or ``"a+b"`` gives ``Compose``.

    For a composition, ``kwargs`` is either keyed by part name (``l2sp={"weight": 0.1}``) or,
    otherwise, goes to the first part.

    Example:
        >>> create_strategy("two_stage", finetune_lr_scale=0.1).name
        'two_stage'
        >>> create_strategy("partial+l2sp", partial={"k": 2}, l2sp={"weight": 0.01}).name
        'compose'
    """
    names = [n.strip() for n in (spec.split("+") if isinstance(spec, str) else list(spec))]
    per_part = len(names) > 1 and kwargs and set(kwargs) <= set(names) and all(isinstance(v, dict) for v in kwargs.values())
    parts = [STRATEGIES.build(n, **(kwargs.get(n, {}) if per_part else (kwargs if i == 0 else {})))
             for i, n in enumerate(names)]
    return parts[0] if len(parts) == 1 else Compose(parts)


__all__ = ["STRATEGIES", "Batch", "Compose", "Phase", "Strategy", "create_strategy", "extract_features",
           "FeatureExtraction", "FullFineTune", "FromScratch", "TwoStage", "PartialFineTune", "Discriminative", "L2SP",
           "DELTA", "BSS", "LoRA", "Adapters", "KD", "Fusion", "Joint", "merge_lora", "save_adapter", "load_adapter"]
