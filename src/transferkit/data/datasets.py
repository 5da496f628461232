"""Labelled datasets from numpy arrays, image folders and text files.

Every dataset here exposes ``targets`` (a numpy array: ``int64`` class labels, or float32 values /
multi-hot rows for the ``regression`` / ``multilabel`` task types), ``task``, ``kind``
(``"image"``, ``"vector"`` or ``"text"``) and ``name``, so splitting, k-shot sampling
and target checks work the same way on all of them.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from transferkit.errors import TransferkitError
from transferkit.tasks import create_task

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def _check_labels(y: np.ndarray, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise TransferkitError(f"Dataset '{name}': labels must be a 1-d array; got shape {y.shape}.")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise TransferkitError(f"Dataset '{name}': labels must be whole numbers 0..C-1; convert them to integers.")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise TransferkitError(f"Dataset '{name}': labels must be >= 0; got {int(y.min())}. Map the classes to 0..C-1.")
    return y


def _targets(y, name: str, task: str) -> np.ndarray:
    """Class labels as int64 (classification); float targets (regression values, multi-hot rows) as
    float32, other targets unchanged, for the task type to check (``transferkit.tasks``)."""
    if task == "classification":
        return _check_labels(np.asarray(y), name)
    y = np.asarray(y)
    return y.astype(np.float32) if np.issubdtype(y.dtype, np.floating) else y


class ArrayDataset(Dataset):
    """Inputs and labels held in memory as tensors.

    Integer (``uint8``) images are scaled to [0, 1]; ``[N, H, W]`` images get a channel axis.

    Shape:
        x: ``[N, ...]``; y: ``[N]`` integer labels (``task="classification"``), or float values ``[N]`` /
        ``[N, k]`` (regression), or multi-hot rows ``[N, C]`` (multilabel).
    """

    batch_indexable = True  # ``ds[list_of_indices]`` returns a whole batch

    def __init__(self, x: Any, y: Any, name: str = "arrays", class_names: list[str] | None = None,
                 task: str = "classification") -> None:
        x = np.asarray(x) if not isinstance(x, torch.Tensor) else x
        self.targets = _targets(y, name, task)
        self.task = task
        if len(x) != len(self.targets):
            raise TransferkitError(
                f"Dataset '{name}': {len(x)} inputs but {len(self.targets)} labels; give one label per input."
            )
        if isinstance(x, np.ndarray) and x.dtype == np.uint8:
            x = x.astype(np.float32) / 255.0
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.is_floating_point() and not torch.isfinite(x).all():
            raise TransferkitError(f"Dataset '{name}': the inputs contain NaN or infinite values; clean or impute them.")
        if x.ndim == 3:  # [N, H, W] greyscale images -> [N, 1, H, W]
            x = x.unsqueeze(1)
        self.x = x
        self.y = torch.as_tensor(self.targets)
        self.name = name
        self.kind = "image" if x.ndim == 4 else "vector"
        self.class_names = class_names

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]

    def resize(self, size: int) -> "ArrayDataset":
        """Images resized to ``size x size`` (bilinear with anti-aliasing, as MNIST is brought to
        the 16x16 of USPS); vectors are returned unchanged."""
        if self.kind != "image" or tuple(self.x.shape[-2:]) == (size, size):
            return self
        x = torch.nn.functional.interpolate(self.x, size=(size, size), mode="bilinear", antialias=True,
                                            align_corners=False)
        return ArrayDataset(x.clamp_(0, 1) if self.x.min() >= 0 and self.x.max() <= 1 else x, self.targets,
                            name=self.name, class_names=self.class_names, task=self.task)


class TextDataset(Dataset):
    """Raw strings and targets (as ``ArrayDataset``'s, per ``task``); the text backbone tokenises them."""

    def __init__(self, texts: list[str], y: Any, name: str = "texts", class_names: list[str] | None = None,
                 task: str = "classification") -> None:
        self.targets = _targets(y, name, task)
        self.task = task
        self.y = torch.as_tensor(self.targets)
        if len(texts) != len(self.targets):
            raise TransferkitError(f"Dataset '{name}': {len(texts)} texts but {len(self.targets)} labels.")
        self.texts = [str(t) for t in texts]
        self.name = name
        self.kind = "text"
        self.class_names = class_names

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int):
        return self.texts[i], self.y[i]


class Subset(Dataset):
    """A view on some indices of a dataset that keeps ``targets``, ``kind`` and ``name``."""

    def __init__(self, base: Dataset, indices: np.ndarray) -> None:
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        self.targets = base.targets[self.indices]
        self.task = getattr(base, "task", "classification")
        self.kind = base.kind
        self.name = base.name
        self.class_names = getattr(base, "class_names", None)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.base[int(self.indices[i])]


def length_order(dataset: Dataset) -> tuple[Dataset, np.ndarray]:
    """A text dataset re-ordered by text length (so batches need little padding), and the order used.

    Other datasets come back unchanged with the identity order. ``x[argsort(order)]`` undoes it.
    """
    if getattr(dataset, "kind", None) != "text":
        return dataset, np.arange(len(dataset))
    order = np.argsort([len(dataset[i][0]) for i in range(len(dataset))], kind="stable")
    return Subset(dataset, order), order


def load_npz(path: str | Path, task: str = "classification") -> ArrayDataset:
    """An ``.npz`` file with arrays ``x`` and ``y`` (loaded without pickle); ``y`` holds class indices
    ``[N]``, values ``[N]`` / ``[N, k]`` (``task="regression"``) or multi-hot rows ``[N, C]`` (``"multilabel"``)."""
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise TransferkitError(f"Cannot read '{path}' as an .npz file ({e}); save it with numpy.savez.") from None
    missing = [k for k in ("x", "y") if k not in data.files]
    if missing:
        raise TransferkitError(
            f"'{path}' has arrays {data.files} but needs 'x' and 'y'; save it as numpy.savez(path, x=..., y=...)."
        )
    y = data["y"]
    create_task(task).check_targets(y, None, f"'{path}' (array 'y')")
    return ArrayDataset(data["x"], y, name=path.stem, task=task)


def _read_text_rows(path: Path) -> list[dict]:
    suffixes = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            if suffixes.startswith(".jsonl") or suffixes.startswith(".json"):
                rows = []
                for n, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError:
                            raise TransferkitError(
                                f"'{path}' line {n} is not valid JSON; write one JSON object per line."
                            ) from None
                return rows
            return list(csv.DictReader(f))
    except UnicodeDecodeError:
        raise TransferkitError(f"'{path}' is not UTF-8 text; re-save it as UTF-8.") from None


def load_text_file(path: str | Path, text_field: str = "text", label_field: str = "label") -> TextDataset:
    """A CSV or JSONL file (optionally gzipped) with ``text`` and ``label`` columns.

    String labels are mapped to 0..C-1 in sorted order and kept as ``class_names``.
    """
    path = Path(path)
    rows = _read_text_rows(path)
    if not rows:
        raise TransferkitError(f"'{path}' holds no rows; add '{text_field}','{label_field}' rows to it.")
    for field in (text_field, label_field):
        if field not in rows[0]:
            raise TransferkitError(
                f"'{path}' has columns {sorted(rows[0])} but needs '{field}'; rename the column or set the field name."
            )
    labels = [r[label_field] for r in rows]
    class_names = None
    try:
        y = np.array([int(v) for v in labels])
    except (TypeError, ValueError):
        class_names = sorted({str(v) for v in labels})
        y = np.array([class_names.index(str(v)) for v in labels])
    return TextDataset([r[text_field] for r in rows], y, name=path.stem.split(".")[0], class_names=class_names)


def scan_image_folder(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Classes and (file, label) pairs of an ImageFolder-style tree, every file checked.

    Raises a TransferkitError naming the first empty class folder or unreadable image.
    """
    from PIL import Image, UnidentifiedImageError

    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise TransferkitError(
            f"Image folder '{root}' has no class sub-folders; put images in one folder per class (root/cat/1.png)."
        )
    samples: list[tuple[Path, int]] = []
    for label, cls in enumerate(classes):
        files = sorted(p for p in (root / cls).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise TransferkitError(
                f"Image folder '{root}': class folder '{cls}' has no images; add images to it or remove it."
            )
        for f in files:
            try:
                with Image.open(f) as im:
                    im.verify()
            except (UnidentifiedImageError, OSError, SyntaxError) as e:
                raise TransferkitError(
                    f"Image folder '{root}': '{f.relative_to(root)}' is not a readable image ({type(e).__name__}); "
                    "replace or remove that file."
                ) from None
            samples.append((f, label))
    return classes, samples


class ImageFolderDataset(Dataset):
    """Images in ``root/<class>/<file>``, as torchvision's ImageFolder, checked up front.

    Args:
        root: the folder.
        image_size: resize to ``image_size x image_size`` (None keeps the size; batches then
            need images of one size).
        channels: 1 (greyscale) or 3 (RGB).
        transform: an extra torchvision transform applied to the tensor (e.g. normalisation).
    """

    def __init__(self, root: str | Path, image_size: int | None = None, channels: int = 3, transform=None) -> None:
        from torchvision import transforms as T

        root = Path(root)
        if not root.is_dir():
            raise TransferkitError(f"Image folder '{root}' does not exist; check the path.")
        if channels not in (1, 3):
            raise TransferkitError(f"ImageFolderDataset: 'channels' must be 1 or 3; got {channels}.")
        self.class_names, self.samples = scan_image_folder(root)
        self.targets = np.array([lab for _, lab in self.samples], dtype=np.int64)
        steps = [T.Grayscale(1) if channels == 1 else T.Lambda(lambda im: im.convert("RGB"))]
        if image_size:
            steps.append(T.Resize((image_size, image_size)))
        steps.append(T.ToTensor())
        if transform is not None:
            steps.append(transform)
        self.transform = T.Compose(steps)
        self.name = root.name
        self.kind = "image"

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        from PIL import Image

        path, label = self.samples[i]
        with Image.open(path) as im:
            return self.transform(im), label
