"""Named datasets: embedded in the package, or read from a data directory.

A dataset spec is ``name:domain`` (see ``transferkit list datasets``) or a path to an
``.npz`` file, an image folder, or a CSV/JSONL text file. The task type (``model.task``) says
which targets are read: class labels, values (regression) or multi-hot rows (multilabel); a named
dataset lists the task types it has targets for.
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from transferkit.data.datasets import (ArrayDataset, ImageFolderDataset, Subset, TextDataset, load_npz,
                                        load_text_file, standardized)
from transferkit.data.multimnist import SEEDS, SIZES, draw_pairs, multi_hot, read_mnist_split
from transferkit.errors import TransferkitError, did_you_mean
from transferkit.registry import Registry

DATA_ENV = "TRANSFERKIT_DATA"


@dataclass(frozen=True)
class DatasetInfo:
    """A named dataset: its domains, where it lives, how to load one domain for a task type
    (``loader(domain, root, task)``) and the task types it has targets for."""

    domains: tuple[str, ...]
    loader: Callable[[str, Path, str], Dataset]
    relpath: str | None  # file under the data directory; None = embedded in the package
    description: str
    tasks: tuple[str, ...] = ("classification",)


DATASETS: Registry[DatasetInfo] = Registry("dataset")


def data_dir(override: str | Path | None = None) -> Path:
    """The folder holding external datasets: ``override``, else $TRANSFERKIT_DATA, else ``./data``."""
    return Path(override or os.environ.get(DATA_ENV) or "data")


def _embedded_path(filename: str) -> Path:
    return Path(str(resources.files("transferkit.data") / "embedded" / filename))


def _mnist_usps(domain: str, root: Path, task: str) -> Dataset:
    d = np.load(_embedded_path("mnist_usps.npz"))
    return ArrayDataset(d[f"x_{domain}"], d[f"y_{domain}"], name=f"mnist_usps:{domain}", class_names=[str(i) for i in range(10)])


def _mnist(domain: str, root: Path, task: str) -> Dataset:
    d = np.load(root / "mnist" / "mnist.npz")
    return ArrayDataset(d[f"x_{domain}"], d[f"y_{domain}"], name=f"mnist:{domain}", class_names=[str(i) for i in range(10)])


def _office_caltech(domain: str, root: Path, task: str) -> Dataset:
    d = np.load(root / "office_caltech10_surf" / "office_caltech10_surf.npz")
    x = d[f"x_{domain}"].astype(np.float32)
    return ArrayDataset(x, d[f"y_{domain}"], name=f"office_caltech10_surf:{domain}", class_names=list(d["class_names"]))


def _amazon(domain: str, root: Path, task: str) -> Dataset:
    """Sentiment (0 negative, 1 positive) for classification; the star rating (1, 2, 4 or 5) for regression."""
    with gzip.open(root / "amazon_reviews" / "amazon_reviews.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [r for r in map(json.loads, f) if r["domain"] == domain]
    texts = [r["text"] for r in rows]
    if task == "regression":
        return TextDataset(texts, np.array([r["rating"] for r in rows], dtype=np.float32),
                           name=f"amazon_reviews:{domain}", task=task)
    return TextDataset(texts, [r["label"] for r in rows], name=f"amazon_reviews:{domain}",
                       class_names=["negative", "positive"])


def _multimnist(domain: str, root: Path, task: str) -> Dataset:
    """Both digits of each MultiMNIST image as one 10-way multi-hot row, the images of the multi-task
    benchmark (``data.kind: multimnist``, seed 0): 20,000 from MNIST's training split, 5,000 from its test split."""
    images, labels = read_mnist_split(root, domain)
    x, left, right = draw_pairs(images, labels, SIZES[domain], SEEDS[domain])
    return ArrayDataset(x, multi_hot(left, right), name=f"multimnist:{domain}", class_names=[str(i) for i in range(10)],
                        task=task)


def _register(name: str, domains: tuple[str, ...], loader, relpath: str | None, description: str,
              tasks: tuple[str, ...] = ("classification",)) -> None:
    DATASETS.register(name, help=description)(DatasetInfo(domains, loader, relpath, description, tasks))


_register("mnist_usps", ("mnist", "usps"), _mnist_usps, None,
          "JDA digits, 16x16: 2,000 MNIST + 1,800 USPS, 10 classes (embedded)")
_register("mnist", ("train", "test"), _mnist, "mnist/mnist.npz",
          "MNIST 28x28, 60,000 train + 10,000 test, 10 classes")
_register("office_caltech10_surf", ("amazon", "caltech", "dslr", "webcam"), _office_caltech,
          "office_caltech10_surf/office_caltech10_surf.npz", "Office-Caltech10 SURF 800-d features, 10 classes")
_register("amazon_reviews", ("books", "dvd", "electronics", "kitchen"), _amazon,
          "amazon_reviews/amazon_reviews.jsonl.gz",
          "Blitzer et al. 2007 reviews, 2,000 per domain: binary sentiment, or the star rating with model.task regression",
          tasks=("classification", "regression"))
_register("multimnist", ("train", "test"), _multimnist, "mnist/mnist.npz",
          "MultiMNIST 28x28, two overlaid digits as a 10-way multi-hot target (model.task multilabel); "
          "20,000 train + 5,000 test", tasks=("multilabel",))


def load_dataset(spec: str, data_root: str | Path | None = None, image_size: int | None = None,
                 channels: int = 3, task: str = "classification", preprocess: str = "none") -> Dataset:
    """``_load`` (below), then ``preprocess`` (``"standardize"``: each example to mean 0, std 1)."""
    ds = _load(spec, data_root, image_size, channels, task)
    return standardized(ds, f"'{spec}'") if preprocess == "standardize" else ds


def load_rows(spec: str, pick: Callable[[int], np.ndarray], data_root: str | Path | None = None,
              image_size: int | None = None, channels: int = 3, task: str = "classification",
              preprocess: str = "none") -> tuple[Dataset, np.ndarray]:
    """The rows ``pick(len(dataset))`` of ``load_dataset(spec, ...)``, and those row indices.

    Equal to ``Subset(load_dataset(spec, ...), rows)``, but in-memory arrays are cut to the rows before
    they are resized and standardised (both act on each example alone), so a sample of a large
    dataset costs a sample's work; files are read lazily anyway.
    """
    path = Path(spec)
    if path.suffix == ".npz" and path.is_file():  # only the sampled examples are converted and checked
        try:
            with np.load(path, allow_pickle=False) as data:
                total = len(data["y"])
        except Exception:  # not a readable archive with 'y': load_npz names the problem
            total = None
        if total:
            rows = np.asarray(pick(total), dtype=np.int64)
            ds = _resized(load_npz(path, task=task, rows=rows), image_size)
            return (standardized(ds, f"'{spec}'") if preprocess == "standardize" else ds), rows
    ds = _load(spec, data_root, image_size, channels, task, resize=False)
    rows = np.asarray(pick(len(ds)), dtype=np.int64)
    if not isinstance(ds, ArrayDataset):
        return Subset(_resized(standardized(ds, f"'{spec}'") if preprocess == "standardize" else ds, image_size),
                      rows), rows
    ds = _resized(ArrayDataset(ds.x[torch.as_tensor(rows)], np.asarray(ds.targets)[rows], name=ds.name,
                               class_names=ds.class_names, task=ds.task), image_size)
    return (standardized(ds, f"'{spec}'") if preprocess == "standardize" else ds), rows


def _load(spec: str, data_root: str | Path | None = None, image_size: int | None = None,
          channels: int = 3, task: str = "classification", resize: bool = True) -> Dataset:
    """Load ``name:domain`` from the registry, or a path (.npz, image folder, .csv/.jsonl[.gz]), with
    the targets of ``task`` (``"classification"``, ``"multilabel"`` or ``"regression"``).

    Example:
        >>> usps = load_dataset("mnist_usps:usps")
        >>> ratings = load_dataset("amazon_reviews:books", task="regression")
    """
    path = Path(spec)
    if path.suffix in {".npz", ".csv", ".jsonl", ".json", ".gz"} or path.is_dir() or os.sep in spec:
        if not path.exists():
            raise TransferkitError(f"Data path '{spec}' does not exist; check the path or use a name from `transferkit list datasets`.")
        if path.is_dir():
            return ImageFolderDataset(path, image_size=image_size, channels=channels, task=task)
        if path.suffix == ".npz":
            return _resized(load_npz(path, task=task), image_size if resize else None)
        return load_text_file(path, task=task)
    name, _, domain = spec.partition(":")
    info = DATASETS.get(name)
    if task not in info.tasks:
        raise TransferkitError(f"Dataset '{name}' has targets for model.task {' or '.join(repr(t) for t in info.tasks)}, "
                               f"not {task!r}; set model.task to {info.tasks[0]!r} or choose another dataset.")
    if not domain:
        raise TransferkitError(f"Dataset '{name}' has domains {', '.join(info.domains)}; write it as '{name}:{info.domains[0]}'.")
    if domain not in info.domains:
        raise TransferkitError(f"Dataset '{name}' has no domain '{domain}'.{did_you_mean(domain, info.domains)} "
                               f"Domains: {', '.join(info.domains)}.")
    root = data_dir(data_root)
    if info.relpath is not None and not (root / info.relpath).exists():
        raise TransferkitError(
            f"Dataset '{name}' needs the file '{info.relpath}' under the data directory '{root}', which is missing; "
            f"set ${DATA_ENV} (or --data-dir) to the folder that holds it."
        )
    return _resized(info.loader(domain, root, task), image_size if resize else None)


def _resized(ds: Dataset, image_size: int | None) -> Dataset:
    return ds.resize(image_size) if image_size and isinstance(ds, ArrayDataset) else ds
