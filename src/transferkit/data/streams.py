"""Task streams for continual learning, built from any in-memory transferkit dataset.

- ``split_classes``: each task holds a group of classes (class- or task-incremental);
- ``permuted``: the same labels under a fixed random pixel permutation per task (domain-incremental);
- ``rotated``: the same labels under a fixed rotation per task (domain-incremental);
- ``sequence``: a list of datasets with the same label set, one per task (e.g. MNIST -> USPS).

Domain streams (``permuted``, ``rotated``, ``sequence``) take datasets of any task type (class
indices, multi-hot rows, real values); ``split_classes`` needs class indices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from transferkit.data.datasets import ArrayDataset
from transferkit.data.splits import has_classes
from transferkit.errors import TransferkitError

Scenario = Literal["class", "task", "domain"]


@dataclass
class Experience:
    """One task of a stream.

    ``classes`` are the labels it holds; ``head`` names its own head when the stream has one head
    per task (labels are then 0..len(classes)-1); ``seen_train`` are the training sets of the
    tasks before it (joint training reads them).
    """

    index: int
    name: str
    train: Dataset
    test: Dataset
    classes: list[int]
    n_experiences: int
    head: str | None = None
    seen_train: list[Dataset] = field(default_factory=list, repr=False)


@dataclass
class Stream:
    name: str
    scenario: Scenario
    experiences: list[Experience]
    num_classes: int  # outputs of the single head (per head when multi-headed)
    task: str = "classification"  # the task type of every experience (model.task)

    @property
    def multi_head(self) -> bool:
        return self.experiences[0].head is not None

    def __len__(self) -> int:
        return len(self.experiences)


class PermutedView(Dataset):
    """``base`` with its pixels (flattened) reordered by ``perm``; indexes by whole batches."""

    batch_indexable = True

    def __init__(self, base: ArrayDataset, perm: torch.Tensor, name: str) -> None:
        self.base, self.perm, self.name = base, perm, name
        self.targets, self.kind, self.class_names = base.targets, base.kind, base.class_names
        self.task = base.task

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        flat = x.reshape(-1)[self.perm] if x.dim() == self.base.x.dim() - 1 else x.reshape(len(x), -1)[:, self.perm]
        return flat.reshape(x.shape), y


def _check(train: Dataset, test: Dataset) -> None:
    for ds, what in ((train, "training"), (test, "test")):
        if not isinstance(ds, ArrayDataset):
            raise TransferkitError(f"Continual streams need in-memory arrays; the {what} dataset "
                                   f"'{getattr(ds, 'name', ds)}' is a {type(ds).__name__}. Convert it to an .npz file.")


def _outputs(ds: ArrayDataset) -> tuple[list[int], int, int]:
    """(the classes, the head's width, the targets' dimensions) of a dataset: its sorted labels for
    class indices; no classes and the target width for multi-hot rows or values."""
    y = np.asarray(ds.targets)
    if has_classes(y):
        labels = sorted(set(y.tolist()))
        return labels, len(labels), 1
    return [], 1 if y.ndim == 1 else int(y.shape[1]), y.ndim


def _task(task: str | None, *datasets: ArrayDataset) -> str:
    """The stream's task type: the datasets' own (``ArrayDataset.task``), which ``task`` must not contradict."""
    own = {getattr(ds, "task", "classification") for ds in datasets}
    if len(own) > 1 or (task is not None and {task} != own):
        raise TransferkitError(f"The stream's datasets hold {' and '.join(sorted(own))} targets"
                               + (f", not {task!r}" if task is not None and len(own) == 1 else "")
                               + "; load every dataset with the stream's model.task.")
    return own.pop()


def _finish(name: str, scenario: Scenario, parts: list[tuple[str, Dataset, Dataset, list[int]]], num_classes: int,
            multi_head: bool = False, task: str = "classification") -> Stream:
    exps = []
    for i, (ename, tr, te, cls) in enumerate(parts):
        exps.append(Experience(i, ename, tr, te, cls, len(parts), head=ename if multi_head else None,
                               seen_train=[e.train for e in exps]))
    return Stream(name, scenario, exps, num_classes, task)


def _subset(ds: ArrayDataset, classes: list[int], remap: bool, name: str) -> ArrayDataset:
    mask = np.isin(ds.targets, classes)
    y = ds.targets[mask]
    if remap:
        y = np.searchsorted(np.asarray(classes), y) if list(classes) == sorted(classes) else \
            np.array([classes.index(int(v)) for v in y])
    return ArrayDataset(ds.x[torch.as_tensor(mask)], y, name=name, class_names=ds.class_names)


def split_classes(train: ArrayDataset, test: ArrayDataset, classes_per_task: int = 2, order: list[int] | None = None,
                  scenario: Scenario = "class", multi_head: bool = False, name: str = "split") -> Stream:
    """Tasks of ``classes_per_task`` classes each, in ``order`` (default 0, 1, 2, ...).

    Example:
        >>> stream = split_classes(mnist_train, mnist_test, classes_per_task=2)   # Split-MNIST, 5 tasks
    """
    _check(train, test)
    if not has_classes(train.targets):
        raise TransferkitError(f"A split_classes stream groups class labels into tasks, and '{train.name}' holds "
                               "multi-hot rows or values; use a permuted, rotated or sequence stream.")
    labels = sorted(set(train.targets.tolist()))
    order = list(order) if order is not None else labels
    if sorted(order) != labels:
        raise TransferkitError(f"stream.order must list every class once ({labels}); got {order}.")
    if classes_per_task < 1 or len(order) % classes_per_task:
        raise TransferkitError(f"stream.classes_per_task={classes_per_task} does not divide the {len(order)} classes; "
                               "choose a divisor.")
    if multi_head and scenario != "task":
        raise TransferkitError("One head per task needs the task-incremental scenario; set stream.scenario to 'task'.")
    parts = []
    for t in range(len(order) // classes_per_task):
        cls = order[t * classes_per_task:(t + 1) * classes_per_task]
        ename = f"task{t + 1}"
        parts.append((ename, _subset(train, cls, multi_head, f"{name}:{ename}"),
                      _subset(test, cls, multi_head, f"{name}:{ename}:test"), cls))
    return _finish(name, scenario, parts, classes_per_task if multi_head else len(labels), multi_head)


def permuted(train: ArrayDataset, test: ArrayDataset, tasks: int = 10, seed: int = 0, name: str = "permuted",
             task: str | None = None) -> Stream:
    """``tasks`` copies of the data, each under its own fixed random pixel permutation (domain-IL)."""
    _check(train, test)
    g = torch.Generator().manual_seed(seed)
    size = train.x[0].numel()
    labels, width, _ = _outputs(train)
    task = _task(task, train, test)
    parts = []
    for t in range(tasks):
        perm = torch.randperm(size, generator=g)
        parts.append((f"task{t + 1}", PermutedView(train, perm, f"{name}:task{t + 1}"),
                      PermutedView(test, perm, f"{name}:task{t + 1}:test"), labels))
    return _finish(name, "domain", parts, width, task=task)


def _rotate(ds: ArrayDataset, degrees: float, name: str) -> ArrayDataset:
    try:
        from torchvision.transforms.functional import InterpolationMode, rotate
    except ImportError:
        raise TransferkitError("Rotated streams need torchvision; install it with pip install transferkit[vision].") from None

    x = rotate(ds.x, degrees, interpolation=InterpolationMode.BILINEAR)
    if ds.x.min() >= 0 and ds.x.max() <= 1:  # keep 8-bit images 8-bit (replay stores them compactly)
        x = (x * 255).round() / 255
    return ArrayDataset(x, ds.targets, name=name, class_names=ds.class_names, task=ds.task)


def rotated(train: ArrayDataset, test: ArrayDataset, tasks: int = 10, seed: int = 0, max_degrees: float = 180.0,
            name: str = "rotated", task: str | None = None) -> Stream:
    """``tasks`` copies of the images, each rotated by its own fixed random angle in [0, max_degrees)."""
    _check(train, test)
    if train.kind != "image":
        raise TransferkitError(f"Rotations need images; '{train.name}' holds vectors. Use a permuted stream.")
    g = torch.Generator().manual_seed(seed)
    labels, width, _ = _outputs(train)
    task = _task(task, train, test)
    parts = []
    for t in range(tasks):
        deg = float(torch.rand((), generator=g)) * max_degrees
        parts.append((f"task{t + 1}", _rotate(train, deg, f"{name}:task{t + 1}"),
                      _rotate(test, deg, f"{name}:task{t + 1}:test"), labels))
    return _finish(name, "domain", parts, width, task=task)


def sequence(datasets: list[tuple[str, ArrayDataset, ArrayDataset]], name: str = "sequence",
             task: str | None = None) -> Stream:
    """One task per (name, train, test) triple, all with the same labels (or target width) and input
    shape (domain-IL)."""
    labels, width, ndim = _outputs(datasets[0][1])

    def fits(ds) -> bool:  # a test set may miss a class; multi-hot rows and values must have the same width
        these, w, n = _outputs(ds)
        return n == ndim and (set(these) <= set(labels) if labels else w == width)

    for dname, tr, te in datasets:
        _check(tr, te)
        same = fits(tr) and fits(te) and _outputs(tr)[0] == labels
        if not same or tr.x.shape[1:] != datasets[0][1].x.shape[1:] or te.x.shape[1:] != tr.x.shape[1:]:
            what = f"labels {labels}" if labels else f"{width} target columns"
            raise TransferkitError(f"Dataset '{dname}' does not match the first of the sequence ({what}, "
                                   f"inputs {tuple(datasets[0][1].x.shape[1:])}); set data.image_size to bring "
                                   "images to one size.")
    task = _task(task, *(ds for _, tr, te in datasets for ds in (tr, te)))
    return _finish(name, "domain", [(d, tr, te, labels) for d, tr, te in datasets], width, task=task)
