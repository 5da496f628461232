"""The strategy contract: small modules with value-returning hooks, combined with ``Compose``.

This module is all the training loop (``engine/``) knows of the methods: the fine-tuning,
continual and multi-task families implement it, and an import-linter contract keeps the engine
from importing them. The trainer asks a strategy, never the other way round:
- ``prepare_model(model) -> model``  set up weights before training (e.g. re-initialise);
- ``phases(model, epochs, lr) -> list[Phase] | None``  what trains, at which rate, for how long;
- ``prepare_data(model, dataset, phase) -> dataset``  e.g. swap images for cached features;
- ``own_parameter_groups(lr) -> list[dict]``  the strategy's own modules, trained in every phase;
- ``prepare_batch(batch) -> batch``  e.g. mix in replayed samples;
- ``loss_terms(batch, out, model) -> dict[str, Tensor]``  extra (already weighted) loss terms;
- ``backward(losses, terms, step) -> (logged, total)``  how the gradient is formed from the task
  losses and the terms (default: ``task_weight * sum(losses) + sum(terms)``, one backward; the
  multi-task weighters replace it);
- ``after_backward(model, batch) -> None``  e.g. project the gradient (A-GEM);
- ``after_step(model, batch, out) -> None``  e.g. store the stream batch in a replay buffer;
- ``after_epoch(model) -> None``  e.g. a loss weighter's per-epoch statistics (DWA);
- ``before_task(model, task) -> None`` / ``after_task(model, task) -> None``  around each task of a
  stream (e.g. estimate a Fisher matrix after it); ``task`` is a name or a continual ``Experience``;
- ``fixed_state_keys() -> set[str]``  state that never changes during training (checkpointed once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import Dataset

from transferkit.errors import TransferkitError
from transferkit.model import Output, TransferModel


@dataclass
class Batch:
    """One training batch. ``x`` is a tensor, or a list of strings for text; ``index`` holds the
    rows' positions in the training dataset when the loader knows them; ``unlabelled`` marks rows
    that carry no target (e.g. unlabelled target-domain rows a domain-adaptation strategy appends):
    the task losses leave them out, the strategy's own terms use them."""

    x: object
    targets: torch.Tensor
    task: str | None = None
    precomputed: bool = False
    index: torch.Tensor | None = None
    unlabelled: torch.Tensor | None = None  # bool [B]; None: every row is labelled
    progress: float = 0.0  # the fraction of the run's training done before this step, for schedules


@dataclass
class Phase:
    """A stretch of epochs with one set of trainable parameter groups.

    ``groups`` are optimizer parameter groups (``{"params": [...], "lr": float}``); every other
    parameter is frozen, and any submodule whose parameters are all frozen runs in eval mode
    (BatchNorm statistics and dropout as at inference). ``precomputed`` means the data are
    cached backbone features.
    """

    name: str
    epochs: int
    groups: list[dict]
    precomputed: bool = False
    extra: dict = field(default_factory=dict)


@dataclass
class Step:
    """What ``Strategy.backward`` gets besides the losses: the model (unwrapped), the batch and
    its output, the step's index within the epoch, and the engine's ``backward(loss)``, which
    applies fp16 loss scaling and the gradient-accumulation divisor (call it instead of
    ``loss.backward()``). ``update()`` applies an optimizer step now and clears the gradients, for
    methods whose step is several updates in turn (MCD); the trainer still steps after ``backward``
    returns, with the gradient left then. ``reduce(tensors)`` turns this process's means over its rows
    into the whole batch's under several processes (DDP; the identity in one), for a strategy that
    forms gradients itself from per-task gradients."""

    model: nn.Module
    batch: Batch
    out: object
    index: int
    backward: Callable[[torch.Tensor], None]
    update: Callable[[], None] | None = None
    reduce: Callable[[list[torch.Tensor]], list[torch.Tensor]] = lambda tensors: tensors


def all_parameters_phase(model: nn.Module, epochs: int, lr: float, name: str = "train") -> Phase:
    return Phase(name, epochs, [{"params": list(model.parameters()), "lr": lr}])


def head_only_phase(model: TransferModel, epochs: int, lr: float, name: str = "head", precomputed: bool = False) -> Phase:
    return Phase(name, epochs, [{"params": list(model.heads.parameters()), "lr": lr}], precomputed=precomputed)


def check_number(owner: str, name: str, value, low: float | None = None, high: float | None = None,
                 integer: bool = False) -> None:
    """Raise ``Owner: 'name' must be ...; got value.`` for a bad hyperparameter."""
    kind = "an integer" if integer else "a number"
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    ok = ok and not isinstance(value, bool)
    if ok and low is not None and value < low:
        ok = False
    if ok and high is not None and value > high:
        ok = False
    if not ok:
        bounds = " ".join(b for b in (f">= {low}" if low is not None else "", f"<= {high}" if high is not None else "") if b)
        raise TransferkitError(f"{owner}: '{name}' must be {kind}{' ' + bounds if bounds else ''}; got {value!r}.")


def weighted_total(losses: dict[str, torch.Tensor], task_weight: float, terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """``task_weight * sum(losses) + sum(terms)``: the task losses weighted by the strategy (joint
    training) plus the strategy's own terms, which carry their own weights."""
    if not losses and not terms:
        raise TransferkitError("A batch gave no task loss and no strategy term to train on; "
                               "check that its rows carry labels.")
    total = None
    for v in losses.values():
        total = v if total is None else total + v
    if total is not None and task_weight != 1.0:
        total = task_weight * total
    for v in terms.values():
        total = v if total is None else total + v
    return total


class Strategy(nn.Module):
    """Base strategy: trains every parameter at the base rate and adds no loss terms."""

    name = "full"
    changes_structure = False  # True when prepare_model adds layers (load_run then replays it)
    sets_gradients = False  # True when backward() writes .grad itself: no fp16 loss scaling, no accumulation

    def prepare_model(self, model: TransferModel) -> TransferModel:
        return model

    def phases(self, model: TransferModel, epochs: int, lr: float) -> list[Phase] | None:
        return None

    def prepare_data(self, model: TransferModel, dataset: Dataset, phase: Phase) -> Dataset:
        return dataset

    def own_parameter_groups(self, lr: float) -> list[dict]:
        """Optimizer groups of the strategy's own modules (a domain discriminator, a second classifier),
        trained in every phase beside whatever the phases train."""
        return []

    def prepare_batch(self, batch: Batch) -> Batch:
        return batch

    def loss_terms(self, batch: Batch, out: Output, model: TransferModel) -> dict[str, torch.Tensor]:
        return {}

    def task_weight(self) -> float:
        """Multiplier of the target task's loss in this step (1 unless the strategy re-weights it)."""
        return 1.0

    def named_loss_terms(self, batch: Batch, out: Output, model: TransferModel) -> dict[str, torch.Tensor]:
        """``loss_terms`` with keys as ``"<strategy>/<term>"``."""
        return {f"{self.name}/{k}": v for k, v in self.loss_terms(batch, out, model).items()}

    def backward(self, losses: dict[str, torch.Tensor], terms: dict[str, torch.Tensor],
                 step: Step) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Form the gradient of this step; return the terms to log (``train/<key>``, averaged over
        the epoch) and the total loss (checked for NaN).

        Args:
            losses: the model's task losses (``{"task": ...}`` for one head).
            terms: the strategy's named, already weighted loss terms.
            step: the model, batch, output, step index and the engine's ``backward``.
        """
        total = weighted_total(losses, self.task_weight(), terms)
        step.backward(total)
        return losses | terms, total

    def after_backward(self, model: TransferModel, batch: Batch) -> None:
        return None

    def after_step(self, model: TransferModel, batch: Batch, out: Output) -> None:
        return None

    def after_epoch(self, model: TransferModel) -> None:
        return None

    def before_task(self, model: TransferModel, task) -> None:
        return None

    def after_task(self, model: TransferModel, task) -> None:
        return None

    def predict(self, model: TransferModel, x, task: str | None = None) -> torch.Tensor | None:
        """Scores to classify ``x`` with, if the strategy has its own classifier (iCaRL's nearest mean)."""
        return None

    def fixed_state_keys(self) -> set[str]:
        """Keys of ``state_dict()`` whose tensors never change once ``prepare_model`` has run (a frozen
        source copy, L2-SP's anchors): an epoch checkpoint writes them once, not every epoch."""
        return set()


def _label(s: Strategy) -> str:
    return getattr(s, "label", s.name)


def _forms_backward(s: Strategy) -> bool:
    return s.backward_part is not None if isinstance(s, Compose) else type(s).backward is not Strategy.backward


def merge_phases(a: list[Phase], b: list[Phase], a_name: str, b_name: str) -> list[Phase]:
    """Phase by phase, the union of both strategies' trainable parameter groups (a parameter that
    both train keeps ``a``'s group and rate); the phases must agree in number, epochs and whether
    they run on cached features."""
    shape = lambda ps: [(p.epochs, p.precomputed) for p in ps]  # noqa: E731
    if shape(a) != shape(b):
        describe = lambda ps: ", ".join(f"{p.name} {p.epochs} epochs{' on cached features' if p.precomputed else ''}"
                                        for p in ps)  # noqa: E731
        raise TransferkitError(
            f"Compose: the training phases of '{a_name}' ({describe(a)}) and '{b_name}' ({describe(b)}) do not line "
            "up, so they cannot be merged; compose only one of them with strategies that set no phases.")
    merged = []
    for pa, pb in zip(a, b):
        seen = {id(p) for g in pa.groups for p in g["params"]}
        extra = [g | {"params": [p for p in g["params"] if id(p) not in seen]} for g in pb.groups]
        merged.append(Phase(pa.name, pa.epochs, [*pa.groups, *(g for g in extra if g["params"])], pa.precomputed,
                            pb.extra | pa.extra))
    return merged


class Compose(Strategy):
    """Several strategies as one: hooks chained in order, loss terms merged, the phases of the
    parts merged phase by phase (the union of what each trains), and ``backward`` from the one
    part that forms the gradient itself (two such parts are refused)."""

    name = "compose"

    def __init__(self, strategies: list[Strategy]) -> None:
        super().__init__()
        if not strategies:
            raise TransferkitError("Compose: give at least one strategy.")
        self.parts = nn.ModuleList(strategies)
        owners = [s.backward_part if isinstance(s, Compose) else s for s in strategies if _forms_backward(s)]
        if len(owners) > 1:
            raise TransferkitError(f"Compose: '{_label(owners[0])}' and '{_label(owners[1])}' both form the gradient "
                                   "themselves (backward); compose at most one of them.")
        object.__setattr__(self, "backward_part", owners[0] if owners else None)  # not a second submodule
        self.sets_gradients = any(s.sets_gradients for s in strategies)

    def prepare_model(self, model):
        for s in self.parts:
            model = s.prepare_model(model)
        return model

    def phases(self, model, epochs, lr):
        merged, owner = None, None
        for s in self.parts:
            p = s.phases(model, epochs, lr)
            if p is None:
                continue
            merged, owner = (p, _label(s)) if merged is None else (merge_phases(merged, p, owner, _label(s)), owner)
        return merged

    def prepare_data(self, model, dataset, phase):
        for s in self.parts:
            dataset = s.prepare_data(model, dataset, phase)
        return dataset

    def own_parameter_groups(self, lr):
        return [g for s in self.parts for g in s.own_parameter_groups(lr)]

    def prepare_batch(self, batch):
        for s in self.parts:
            batch = s.prepare_batch(batch)
        return batch

    def task_weight(self):
        w = 1.0
        for s in self.parts:
            w *= s.task_weight()
        return w

    def named_loss_terms(self, batch, out, model):
        terms: dict[str, torch.Tensor] = {}
        for s in self.parts:
            terms |= s.named_loss_terms(batch, out, model)
        return terms

    def backward(self, losses, terms, step):
        if self.backward_part is not None:
            return self.backward_part.backward(losses, terms, step)
        return super().backward(losses, terms, step)

    def after_backward(self, model, batch):
        for s in self.parts:
            s.after_backward(model, batch)

    def after_step(self, model, batch, out):
        for s in self.parts:
            s.after_step(model, batch, out)

    def after_epoch(self, model):
        for s in self.parts:
            s.after_epoch(model)

    def before_task(self, model, task):
        for s in self.parts:
            s.before_task(model, task)

    def after_task(self, model, task):
        for s in self.parts:
            s.after_task(model, task)

    def predict(self, model, x, task=None):
        return next((p for s in self.parts if (p := s.predict(model, x, task)) is not None), None)

    def fixed_state_keys(self):
        return {f"parts.{i}.{k}" for i, s in enumerate(self.parts) for k in s.fixed_state_keys()}
