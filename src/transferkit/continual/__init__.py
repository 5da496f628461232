"""Continual (lifelong) learning: strategies against forgetting (``runs.learner.train_stream`` learns
a stream of tasks with them).

Strategies are small modules with the hooks of ``transferkit.strategy.Strategy`` and combine with
``"+"`` (``lwf+er``), also with the fine-tuning strategies (``er+lora`` trains LoRA on a frozen
pretrained backbone with replay). Their maths is in ``continual.functional``.
"""

from __future__ import annotations

from transferkit.continual.agem import AGEM
from transferkit.continual.der import DER, DERpp
from transferkit.continual.ewc import EWC, OnlineEWC
from transferkit.continual.icarl import ICaRL
from transferkit.continual.lwf import LwF
from transferkit.continual.naive import JointTraining, Naive
from transferkit.continual.replay import ER
from transferkit.continual.si import SI
from transferkit.continual.task_adapters import TaskAdapters
from transferkit.finetune import STRATEGIES
from transferkit.strategy import Compose, Strategy
from transferkit.registry import Registry

CONTINUAL: Registry[type[Strategy]] = Registry("continual strategy")
for _cls in (Naive, JointTraining, EWC, OnlineEWC, SI, LwF, ER, AGEM, DER, DERpp, ICaRL, TaskAdapters):
    CONTINUAL.register(_cls.name)(_cls)


def create_continual_strategy(spec: str | list[str], **kwargs) -> Strategy:
    """A continual strategy by name; ``"a+b"`` (or a list) composes them. Names not in the continual
    registry are looked up among the fine-tuning strategies (``lora``, ``adapters`` ...).

    ``kwargs`` go to the first part, or are keyed by part name for a composition.

    Example:
        >>> create_continual_strategy("lwf+er", lwf={"weight": 1.0}, er={"size": 500}).name
        'compose'
    """
    names = [n.strip() for n in (spec.split("+") if isinstance(spec, str) else list(spec))]
    per_part = len(names) > 1 and kwargs and set(kwargs) <= set(names) and all(isinstance(v, dict) for v in kwargs.values())

    def build(name, args):
        registry = CONTINUAL if name in CONTINUAL or name not in STRATEGIES else STRATEGIES
        return registry.build(name, **args)

    parts = [build(n, kwargs.get(n, {}) if per_part else (kwargs if i == 0 else {})) for i, n in enumerate(names)]
    strategy = parts[0] if len(parts) == 1 else Compose(parts)
    strategy.label = "+".join(names)
    return strategy


__all__ = ["CONTINUAL", "create_continual_strategy", "Naive",
           "JointTraining", "EWC", "OnlineEWC", "SI", "LwF", "ER", "AGEM", "DER", "DERpp", "ICaRL", "TaskAdapters"]
