"""Targets for every task type, checked when a dataset is read.

* ``classification``: one class per example; ``int64 [N]`` class indices, with ``class_names``
  when the file gave names (names are sorted, then numbered 0..C-1).
* ``multilabel``: any number of classes per example; multi-hot ``float32 [N, C]`` in {0, 1}.
* ``regression``: one or more real numbers per example; ``float32 [N]`` or ``[N, k]``.

``check_targets`` validates arrays (``.npz`` files, in-memory data); ``encode_labels`` turns the
label values of text rows (CSV/JSONL files, labels files of image folders) into targets and names
the row of the first value it cannot read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from transferkit.errors import TransferkitError
from transferkit.tasks import TASKS as TASK_TYPES

TASKS = tuple(TASK_TYPES.names())  # the task types' names; transferkit.tasks is the one list of them
SEPARATORS = ";|"  # between the labels of one row in a CSV cell: "cat;dog" or "cat|dog"
MAX_CLASS_INDEX = 2**31 - 1
FLOAT32_MAX = float(np.finfo(np.float32).max)
EXACT_INT32 = 2**24  # integers beyond this are not exact in float32
_SIGNED_INT = re.compile(r"\s*[+-]?[0-9]+\s*")
_FLOAT = re.compile(r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*")


def check_task(task: str) -> str:
    """``task`` if it is a known task type (``transferkit.tasks``), else a one-sentence error with a did-you-mean."""
    TASK_TYPES.get(str(task))
    return task


def first_row(bad: np.ndarray) -> int:
    """The index of the first example (row) where ``bad`` is True."""
    return int(np.argwhere(bad)[0][0])


def _numeric(y: np.ndarray, src: str, what: str) -> None:
    if y.dtype.kind not in "biuf":
        raise TransferkitError(f"{src}: {what} must be numbers; got an array of dtype {y.dtype}.")


def _as_float32(y: np.ndarray, src: str) -> np.ndarray:
    """``y`` as float32, refusing values that would not survive the conversion (naming the first row)."""
    big = np.abs(y.astype(np.float64))
    if y.dtype.kind in "iu" and np.any(big > EXACT_INT32):
        i = first_row(big > EXACT_INT32)
        raise TransferkitError(f"{src}: y[{i}] = {y[i]} is beyond 2**24, which float32 cannot hold exactly; "
                               "scale the targets down.")
    if not np.all(np.isfinite(big)):
        i = first_row(~np.isfinite(big))
        raise TransferkitError(f"{src}: y[{i}] = {y[i]} is not a finite number; remove or impute that example.")
    if np.any(big > FLOAT32_MAX):
        i = first_row(big > FLOAT32_MAX)
        raise TransferkitError(f"{src}: y[{i}] = {y[i]} is beyond float32's range (3.4e38); scale the "
                               "targets down.")
    return y.astype(np.float32)


def _class_indices(y: np.ndarray, src: str) -> tuple[np.ndarray, list[str] | None]:
    if y.dtype.kind == "U":  # class names
        names = sorted({str(v) for v in y})
        return np.searchsorted(np.array(names), y).astype(np.int64), names
    _numeric(y, src, "labels")
    whole = np.isfinite(y) & (y == np.round(y)) if y.dtype.kind == "f" else np.ones(len(y), dtype=bool)
    if not np.all(whole):
        i = first_row(~whole)
        raise TransferkitError(f"{src}: y[{i}] = {y[i]} is not a class index 0..C-1; convert the labels to "
                               "whole numbers, or set model.task: regression for real-valued targets.")
    if y.size and (y.min() < 0 or y.max() > MAX_CLASS_INDEX):
        i = first_row((y < 0) | (y > MAX_CLASS_INDEX))
        raise TransferkitError(f"{src}: y[{i}] = {y[i]} is not a class index 0..C-1; number the classes "
                               "from 0.")
    return y.astype(np.int64), None


def check_targets(y: Any, name: str, task: str = "classification",
                  source: str | None = None) -> tuple[np.ndarray, list[str] | None]:
    """Targets of an array dataset, checked and converted for ``task``; returns ``(targets, names)``.

    ``names`` are the class names when ``y`` holds strings (classification only), else None.
    Errors start with ``source`` (default ``Dataset 'name'``) and name the first bad row.

    Shape:
        y: ``[N]`` (classification; regression), ``[N, k]`` (regression) or ``[N, C]`` (multilabel).
    """
    y = np.asarray(y)
    src = source or f"Dataset '{name}'"
    check_task(task)
    if task == "classification":
        if y.ndim != 1:
            hint = " (for multi-hot targets set model.task: multilabel)" if y.ndim == 2 else ""
            raise TransferkitError(f"{src}: labels must be a 1-d array [N]; got shape {y.shape}{hint}.")
        return _class_indices(y, src)
    _numeric(y, src, "targets")
    if task == "regression":
        if y.ndim not in (1, 2) or (y.ndim == 2 and y.shape[1] == 0):
            raise TransferkitError(f"{src}: regression targets must have shape [N] or [N, k]; got {y.shape}.")
        if y.dtype.kind == "b":
            raise TransferkitError(f"{src}: regression targets are true/false values; store numbers, or set "
                                   "model.task: classification.")
        return _as_float32(y, src), None
    if y.ndim != 2 or y.shape[1] == 0:
        raise TransferkitError(f"{src}: multi-label targets must be multi-hot [N, C] arrays of 0 and 1; got shape "
                               f"{y.shape}.")
    bad = (y != 0) & (y != 1)
    if np.any(bad):
        i = first_row(bad)
        raise TransferkitError(f"{src}: y[{i}] = {y[i].tolist()}, but multi-hot targets are 0 or 1; "
                               "convert them.")
    return y.astype(np.float32), None


# ----------------------------------------------------------------------------------- text rows
_SEP = re.compile(f"[{re.escape(SEPARATORS)}]")


def _class_value(v: Any, where: str, task: str) -> int | str:
    """A class index (int) or name (str) from one cell or JSON value."""
    if isinstance(v, (bool, list, dict)) or v is None:
        fix = ("set model.task: multilabel for several labels per row" if isinstance(v, list) and task != "multilabel"
               else "write a class name or a whole number")
        raise TransferkitError(f"{where}: the label {v!r} is not a class; {fix}.")
    if isinstance(v, float):
        if not (np.isfinite(v) and v == round(v)):
            raise TransferkitError(f"{where}: the label {v!r} is not a class index; write a whole number or a class "
                                   "name, or set model.task: regression for real-valued targets.")
        v = int(v)
    return int(v) if isinstance(v, str) and _SIGNED_INT.fullmatch(v) else v


def _check_index(c: int, where: str) -> None:
    if not 0 <= c <= MAX_CLASS_INDEX:
        raise TransferkitError(f"{where}: the class index {c} is outside 0..{MAX_CLASS_INDEX}; number the classes "
                               "from 0, or write class names.")


def _number(v: Any, where: str) -> float:
    if isinstance(v, str) and _FLOAT.fullmatch(v):
        v = float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TransferkitError(f"{where}: the target {v!r} is not a number; a regression task needs numeric "
                               "targets (or set model.task: classification).")
    if isinstance(v, int) and abs(v) > EXACT_INT32:
        raise TransferkitError(f"{where}: the target {v} is beyond 2**24, which float32 cannot hold exactly; "
                               "scale the targets down.")
    if not np.isfinite(v) or abs(v) > FLOAT32_MAX:
        raise TransferkitError(f"{where}: the target {v!r} is not a finite float32 number; fix or remove the row.")
    return float(v)


def _parts(v: Any) -> list:
    """The items of one row: a JSON list, a string split at ';' or '|', or the single value."""
    if isinstance(v, list):
        return v
    if isinstance(v, str):
        return [p.strip() for p in _SEP.split(v) if p.strip()]
    return [v]


def _regression(values: Sequence[Any], where: Callable[[int], str]) -> np.ndarray:
    rows, first = [], 0
    for i, v in enumerate(values):
        many = isinstance(v, list) or (isinstance(v, str) and _SEP.search(v) is not None)
        row = [_number(p, where(i)) for p in _parts(v)] if many else [_number(v, where(i))]
        width = len(row) if many else 0
        if many and not row:
            raise TransferkitError(f"{where(i)}: the list of targets is empty; give at least one number.")
        if i == 0:
            first = width
        elif width != first:
            raise TransferkitError(f"{where(i)}: {max(width, 1)} target value(s) where the first row has "
                                   f"{max(first, 1)}; give every row the same number of targets as a list.")
        rows.append(row)
    y = np.array(rows, dtype=np.float32)
    return y[:, 0] if first == 0 else y


def _multilabel(values: Sequence[Any], where: Callable[[int], str], source: str) -> tuple[np.ndarray, list[str] | None]:
    sets = [{_class_value(p, where(i), "multilabel") for p in _parts(v)} for i, v in enumerate(values)]
    names = None
    if all(isinstance(c, int) for s in sets for c in s):
        for i, s in enumerate(sets):
            for c in s:
                _check_index(c, where(i))
        width = max((max(s) for s in sets if s), default=-1) + 1
        column = {c: c for c in range(width)}
    else:  # names are kept as written ("00" stays "00")
        sets = [{str(p) for p in _parts(v)} for v in values]
        names = sorted(set().union(*sets))
        width, column = len(names), {n: j for j, n in enumerate(names)}
    if width == 0:
        raise TransferkitError(f"{source}: no row has a label; give each row its labels, separated by ';'.")
    y = np.zeros((len(sets), width), dtype=np.float32)
    for i, s in enumerate(sets):
        y[i, [column[c] for c in s]] = 1.0
    return y, names


def encode_labels(values: Sequence[Any], task: str, where: Callable[[int], str],
                  source: str = "the file") -> tuple[np.ndarray, list[str] | None]:
    """Targets from the label values of text rows (CSV cells are strings; JSONL values any JSON type).

    Classification: when every label is a whole number they are class indices, otherwise class
    names (sorted, then numbered). Multi-label: a JSON list, or a string whose labels are separated
    by ';' or '|' (an empty cell: no label), indices or names as for classification. Regression: a
    number, or a JSON list / separated string of numbers (then every row has as many).
    ``where(i)`` names row ``i`` in the error for the first value that cannot be read.

    Returns:
        ``(targets, class_names)``; ``class_names`` is None for class indices and for regression.
    """
    check_task(task)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, str) and not v.strip() and task != "multilabel"):
            raise TransferkitError(f"{where(i)} has no label; fill it in or remove the row.")
    if task == "regression":
        return _regression(values, where), None
    if task == "multilabel":
        return _multilabel(values, where, source)
    classes = [_class_value(v, where(i), task) for i, v in enumerate(values)]
    if all(isinstance(c, int) or _FLOAT.fullmatch(c) for c in classes):  # numbers, some not whole
        i = next((i for i, c in enumerate(classes) if not isinstance(c, int)), None)
        if i is not None:
            raise TransferkitError(f"{where(i)}: the label {values[i]!r} is a real number, not a class; set "
                                   "model.task: regression for real-valued targets (or name the classes).")
    if all(isinstance(c, int) for c in classes):
        for i, c in enumerate(classes):
            _check_index(c, where(i))
        return np.array(classes, dtype=np.int64), None
    given = [str(v) for v in values]  # names are kept as written ("00" stays "00")
    names = sorted(set(given))
    index = {n: j for j, n in enumerate(names)}
    return np.array([index[g] for g in given], dtype=np.int64), names
