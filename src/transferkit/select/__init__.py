"""Transferability scores: how well a candidate source model suits a target task, from its features
or outputs on the target data, before any fine-tuning. Higher is better for every score.

``SCORES`` maps a score's name to a ``Score``: the pure function, what it needs (the candidate's
``features`` on the target examples, its softmax ``probs``, or its hard ``source_labels``) and the
task kinds it scores. ``score(name, ...)`` computes one, ``score_all(...)`` every score that the
given inputs and task allow.

Example:
    >>> score("logme", features=feats, labels=y)
    >>> score_all(features=feats, probs=softmax_outputs, labels=y)  # {"gbc": ..., "hscore": ..., ...}
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from transferkit.errors import TransferkitError
from transferkit.registry import Registry, check_kwargs
from transferkit.select.gbc import gbc
from transferkit.select.hscore import h_score, h_score_regularised
from transferkit.select.leep import leep
from transferkit.select.logme import LogMEFit, logme, logme_fit
from transferkit.select.nce import nce
from transferkit.select.transrate import transrate

TASK_KINDS = ("classification", "regression")
INPUTS = {"features": "the candidate model's features of the target examples, [N, D]",
          "probs": "the source model's softmax outputs on the target examples, [N, C_s]",
          "source_labels": "the source model's hard labels of the target examples, [N] (or give 'probs')"}


@dataclass(frozen=True)
class Score:
    """A registered transferability score.

    Attributes:
        fn: the pure function, ``fn(inputs, labels, **options) -> float`` (LogME also takes ``regression``).
        needs: the input it reads besides the target labels: ``features``, ``probs`` or ``source_labels``.
        tasks: the task kinds it scores.
    """

    fn: Callable[..., float]
    needs: str
    tasks: tuple[str, ...] = ("classification",)

    def __call__(self, inputs, labels, task: str = "classification", **options) -> float:
        if "regression" in self.tasks:
            options["regression"] = task == "regression"
        return self.fn(inputs, labels, **options)


SCORES: Registry[Score] = Registry("transferability score")
SCORES.register("logme", help="LogME (You et al., 2021): maximum evidence of a Bayesian linear model on the features.")(
    Score(logme, "features", TASK_KINDS))
SCORES.register("hscore", help="H-score (Bao et al., 2019): class-mean covariance over the feature covariance.")(
    Score(h_score, "features"))
SCORES.register("hscore_regularised", help="H-score with a Ledoit-Wolf covariance (Ibrahim et al., 2022).")(
    Score(h_score_regularised, "features"))
SCORES.register("transrate", help="TransRate (Huang et al., 2022): coding-rate gain from the target classes.")(
    Score(transrate, "features"))
SCORES.register("gbc", help="GBC (Pándy et al., 2022): minus the Bhattacharyya overlap of per-class Gaussians.")(
    Score(gbc, "features"))
SCORES.register("leep", help="LEEP (Nguyen et al., 2020): log-likelihood of the empirical predictor from softmax outputs.")(
    Score(leep, "probs"))
SCORES.register("nce", help="NCE (Tran et al., 2019): minus the entropy of the target labels given hard source labels.")(
    Score(nce, "source_labels"))


def _check_task(task: str) -> None:
    if task not in TASK_KINDS:
        raise TransferkitError(f"'task' must be one of {', '.join(TASK_KINDS)}; got {task!r}.")


def _inputs(name: str, spec: Score, given: dict):
    """The input ``spec`` reads; NCE's hard labels default to the arg-max of ``probs``."""
    if spec.needs == "source_labels" and given["source_labels"] is None and given["probs"] is not None:
        probs = np.asarray(given["probs"])
        return probs.argmax(1) if probs.ndim == 2 else probs
    if given[spec.needs] is None:
        raise TransferkitError(f"Score '{name}' needs '{spec.needs}' ({INPUTS[spec.needs]}); none was given.")
    return given[spec.needs]


def score(name: str, *, labels, features=None, probs=None, source_labels=None, task: str = "classification",
          **options) -> float:
    """The transferability score ``name`` of one candidate (higher is better).

    Args:
        name: a registered score (``SCORES.names()``).
        labels: the target labels, class indices 0..C-1 (or the regression targets, ``task="regression"``).
        features: the candidate's features of the target examples (scores that need them).
        probs: the source model's softmax outputs on the target examples (LEEP; NCE takes their arg-max).
        source_labels: the source model's hard labels of the target examples (NCE).
        task: ``"classification"`` or ``"regression"``.
        **options: the score's own keyword arguments (e.g. ``algorithm`` for LogME, ``eps`` for TransRate).

    Shape:
        labels: ``[N]`` (regression: ``[N]`` or ``[N, K]``); features: ``[N, D]``; probs: ``[N, C_s]``;
        source_labels: ``[N]``.
    """
    spec = SCORES.get(name)
    _check_task(task)
    if task not in spec.tasks:
        raise TransferkitError(f"Score '{name}' scores {' and '.join(spec.tasks)} tasks only; got task '{task}' "
                               f"(choose among {', '.join(applicable(task))}).")
    data_args = tuple(inspect.signature(spec.fn).parameters)[:2]  # the inputs and the labels
    check_kwargs(f"Score '{name}'", spec.fn, options, hidden=(*data_args, "regression"))
    given = {"features": features, "probs": probs, "source_labels": source_labels}
    return spec(_inputs(name, spec, given), labels, task, **options)


def applicable(task: str = "classification", available: tuple[str, ...] = tuple(INPUTS)) -> list[str]:
    """The names of the scores for ``task`` computable from the ``available`` inputs."""
    _check_task(task)
    have = set(available) | ({"source_labels"} if "probs" in available else set())
    return [n for n in SCORES.names() if task in SCORES.get(n).tasks and SCORES.get(n).needs in have]


def score_all(*, labels, features=None, probs=None, source_labels=None, task: str = "classification") -> dict[str, float]:
    """Every registered score that the given inputs and ``task`` allow, with default options, by name.

    Shape:
        as ``score``.
    """
    given = {"features": features, "probs": probs, "source_labels": source_labels}
    names = applicable(task, tuple(k for k, v in given.items() if v is not None))
    if not names:
        raise TransferkitError("score_all needs 'features', 'probs' or 'source_labels' besides the labels; none was given.")
    return {n: score(n, labels=labels, task=task, **given) for n in names}


__all__ = ["INPUTS", "SCORES", "TASK_KINDS", "LogMEFit", "Score", "applicable", "gbc", "h_score", "h_score_regularised",
           "leep", "logme", "logme_fit", "nce", "score", "score_all", "transrate"]
