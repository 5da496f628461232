"""``strategy: auto`` resolved before training: measure what ``select.auto.choose`` decides from, then put
the chosen strategy (its arguments, the model keys it sets and the reason) into the run's config.

Measured cheaply, with no training: the labelled target rows per class; LogME (You et al., ICML 2021) of
the source backbone's features of at most ``SAMPLE`` labelled target rows beside that of a random
initialisation of the same backbone; and the proxy A-distance (Ben-David et al., NIPS 2007) between at
most ``SAMPLE`` source rows (``data.source``, or the data of the run that wrote ``model.weights``) and
target rows (``data.unlabelled``, else the labelled target rows) in the source backbone's features.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from transferkit.config import RunConfig, load_config
from transferkit.data import Subset, load_dataset
from transferkit.errors import TransferkitError
from transferkit.finetune import create_strategy
from transferkit.finetune.saved import head_state
from transferkit.metrics.domain import proxy_a_distance
from transferkit.model import TransferModel
from transferkit.runs.domain import features, sample
from transferkit.select import score
from transferkit.select.auto import Choice, Facts, check_budget, choose

AUTO = "auto"
ARGS = ("budget",)  # strategy.args that auto takes
SAMPLE = 500  # rows per domain for LogME and the proxy A-distance (a seeded draw)
PAD_MIN_ROWS = 20  # fewer rows per domain leave the proxy A-distance to chance (half of them train its classifier)
RANDOM_SEED = 0  # the random reference's initialisation
PRETRAINED = ("hf_text", "fusion")  # backbones whose default (no model.weights) is already a source model


def check_args(args: dict) -> str:
    """The budget of ``strategy.args``; any other key is refused with one sentence."""
    extra = sorted(set(args) - set(ARGS))
    if extra:
        raise TransferkitError(f"strategy auto takes only {', '.join(ARGS)} in strategy.args; got {', '.join(extra)} "
                               "(remove them, or name the strategy instead of auto).")
    return check_budget(args.get("budget", "normal"))


def _source_spec(cfg: RunConfig) -> str | None:
    """The source data: ``data.source``, else the dataset of the run directory that holds ``model.weights``."""
    if cfg.data.source:
        return cfg.data.source
    w = Path(cfg.model.weights) if cfg.model.weights else None
    run = w.parent / "config.yaml" if w is not None and w.is_file() else None
    if run is None or not run.is_file():
        return None
    try:
        d = load_config(run).data
    except TransferkitError:
        return None
    return d.source or d.dataset


def _logme(model: TransferModel, rows: Dataset, labels: np.ndarray) -> tuple[float | None, float | None]:
    """LogME of the source features and of a random initialisation of the same model on ``rows``."""
    if len(labels) < 2 or len(np.unique(labels)) < 2:
        return None, None
    src = score("logme", labels=labels, features=features(model, rows))
    ref = copy.deepcopy(model)
    create_strategy("scratch", seed=RANDOM_SEED).prepare_model(ref)
    return src, score("logme", labels=labels, features=features(ref, rows))


def _pad(cfg: RunConfig, model: TransferModel, train: Dataset, target: Dataset | None) -> float | None:
    """Proxy A-distance between source and target rows in the model's features (None when either is missing
    or too small)."""
    n_src = getattr(train, "source_rows", 0)
    if n_src:
        source = Subset(train, np.arange(n_src))
    else:
        spec, d = _source_spec(cfg), cfg.data
        if spec is None:
            return None
        try:
            source = load_dataset(spec, d.data_dir, d.image_size, d.channels, task="classification",
                                  preprocess=d.preprocess)
        except TransferkitError:
            return None  # the source run's data is not readable here: no distance, as `rank` does
    if target is None or min(len(source), len(target)) < PAD_MIN_ROWS:
        return None
    src, tgt = (features(model, sample(ds, SAMPLE, seed=cfg.data.seed)) for ds in (source, target))
    if src.shape[1] != tgt.shape[1]:
        return None
    return proxy_a_distance(src, tgt, seed=cfg.data.seed)


def measure(cfg: RunConfig, model: TransferModel, train: Dataset, unlabelled: Dataset | None,
            num_classes: int) -> Facts:
    """The facts ``choose`` needs, measured on the data and the untrained model of ``cfg``."""
    budget = check_args(cfg.strategy.args)
    n_src = getattr(train, "source_rows", 0)
    rows = np.arange(n_src, len(train))
    labelled = Subset(train, rows)
    labels = np.asarray(train.targets)[rows] if hasattr(train, "targets") else np.array([train[i][1] for i in rows])
    has_weights = bool(cfg.model.weights) or cfg.model.backbone in PRETRAINED
    with torch.random.fork_rng():  # measuring leaves the run's random state as it was
        pick = sample(labelled, SAMPLE, seed=cfg.data.seed)
        pick_labels = labels if len(pick) == len(labelled) else np.asarray([pick[i][1] for i in range(len(pick))])
        logme, ref = _logme(model, pick, pick_labels) if has_weights else (None, None)
        target = unlabelled if unlabelled is not None else (labelled if len(labelled) else None)
        pad = _pad(cfg, model, train, target)
    return Facts(shots=len(rows) / num_classes, num_classes=num_classes, source_model=has_weights,
                 source_head=cfg.model.source_head or head_state(cfg.model.weights, model) is not None,
                 source_data=bool(cfg.data.source), unlabelled=unlabelled is not None, pad=pad, logme=logme,
                 logme_random=ref, backbone_parameters=sum(p.numel() for p in model.backbone.parameters()),
                 budget=budget)


def apply(cfg: RunConfig, choice: Choice) -> RunConfig:
    """``cfg`` with the chosen strategy, its arguments and reason, and the model keys the choice sets."""
    strategy = cfg.strategy.model_copy(update={"name": choice.strategy, "args": dict(choice.args),
                                               "reason": choice.reason})
    return cfg.model_copy(update={"strategy": strategy, "model": cfg.model.model_copy(update=choice.model)})


def resolve(cfg: RunConfig, model: TransferModel, train: Dataset, unlabelled: Dataset | None,
            num_classes: int) -> tuple[RunConfig, Choice, Facts]:
    """Measure, choose and apply: the resolved config, the choice and the facts it was made from."""
    facts = measure(cfg, model, train, unlabelled, num_classes)
    choice = choose(facts)
    return apply(cfg, choice), choice, facts
