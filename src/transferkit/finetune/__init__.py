"""Fine-tuning strategies: a registry of small composable modules (see ``base.py`` for the hooks)."""

from __future__ import annotations

from transferkit.finetune.base import Batch, Compose, Phase, Strategy
from transferkit.finetune.feature_extraction import FeatureExtraction, extract_features
from transferkit.finetune.full import FullFineTune
from transferkit.finetune.scratch import FromScratch
from transferkit.finetune.two_stage import TwoStage
from transferkit.registry import Registry

STRATEGIES: Registry[type[Strategy]] = Registry("strategy")
for _cls in (FromScratch, FeatureExtraction, FullFineTune, TwoStage):
    STRATEGIES.register(_cls.name)(_cls)


def create_strategy(spec: str | list[str], **kwargs) -> Strategy:
    """A strategy by name; a list or ``"a+b"`` gives ``Compose`` (kwargs then go to the first).

    Example:
        >>> create_strategy("two_stage", finetune_lr_scale=0.1).name
        'two_stage'
    """
    names = spec.split("+") if isinstance(spec, str) else list(spec)
    parts = [STRATEGIES.build(n.strip(), **(kwargs if i == 0 else {})) for i, n in enumerate(names)]
    return parts[0] if len(parts) == 1 else Compose(parts)


__all__ = ["STRATEGIES", "Batch", "Compose", "Phase", "Strategy", "create_strategy", "extract_features",
           "FeatureExtraction", "FullFineTune", "FromScratch", "TwoStage"]
