"""Labelled datasets from numpy arrays, image folders and text files.

Every dataset here exposes ``targets`` (a numpy array: ``int64 [N]`` class indices, multi-hot
``float32 [N, C]`` or ``float32 [N]`` / ``[N, k]`` regression targets, see ``data/targets.py``),
``task``, ``kind`` (``"image"``, ``"vector"`` or ``"text"``), ``name`` and ``class_names``, so
splitting, k-shot sampling and label checks work the same way on all of them. Every reader takes
``task`` (``"classification"``, ``"multilabel"`` or ``"regression"``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from transferkit.data.rows import Rows, read_rows
from transferkit.data.targets import EXACT_INT32, FLOAT32_MAX, check_targets, encode_labels, first_row
from transferkit.errors import TransferkitError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def _check_inputs(x: np.ndarray, src: str) -> np.ndarray:
    """Array inputs as float32, refusing anything the conversion would change or the models cannot take."""
    if x.dtype.kind not in "biuf":
        raise TransferkitError(f"{src}: the inputs must be numbers; got an array of dtype {x.dtype}.")
    if x.ndim < 2:
        raise TransferkitError(f"{src}: the inputs need a feature axis, [N, D] or images; got shape {x.shape}, so "
                               "reshape them (x[:, None] for one feature).")
    if x.dtype == np.uint8:  # 8-bit images -> [0, 1]
        return x.astype(np.float32) / np.float32(255.0)
    big = np.abs(x.astype(np.float64)).reshape(len(x), -1)
    if x.dtype.kind in "iu" and np.any(big > EXACT_INT32):
        raise TransferkitError(f"{src}: x[{first_row(big > EXACT_INT32)}] holds integers beyond 2**24, which "
                               "float32 cannot hold exactly; scale the inputs down.")
    if not np.all(np.isfinite(big)):
        raise TransferkitError(f"{src}: x[{first_row(~np.isfinite(big))}] contains NaN or infinite values; "
                               "clean or impute them.")
    if np.any(big > FLOAT32_MAX):
        raise TransferkitError(f"{src}: x[{first_row(big > FLOAT32_MAX)}] holds values beyond float32's range "
                               "(3.4e38); scale the inputs down.")
    return x.astype(np.float32)


class ArrayDataset(Dataset):
    """Inputs and targets held in memory as tensors.

    Integer (``uint8``) images are scaled to [0, 1]; ``[N, H, W]`` images get a channel axis; every
    other input is stored as float32 (values that float32 would change are refused).

    Shape:
        x: ``[N, ...]``; y: targets for ``task`` (``[N]`` class indices or names, ``[N, C]`` multi-hot,
        ``[N]`` / ``[N, k]`` real numbers).
    """

    batch_indexable = True  # ``ds[list_of_indices]`` returns a whole batch

    def __init__(self, x: Any, y: Any, name: str = "arrays", class_names: list[str] | None = None,
                 task: str = "classification", source: str | None = None) -> None:
        src = source or f"Dataset '{name}'"  # how errors name the data (load_npz: the file)
        self.targets, names = check_targets(y, name, task, src)
        if isinstance(x, torch.Tensor):
            x = x.to(torch.float32)
            if not torch.isfinite(x).all():
                raise TransferkitError(f"{src}: the inputs contain NaN or infinite values; clean or impute them.")
        else:
            x = torch.from_numpy(_check_inputs(np.asarray(x), src))
        if len(x) != len(self.targets):
            raise TransferkitError(f"{src}: {len(x)} inputs but {len(self.targets)} labels; give one label per input.")
        if x.ndim == 3:  # [N, H, W] greyscale images -> [N, 1, H, W]
            x = x.unsqueeze(1)
        self.x = x
        self.y = torch.as_tensor(self.targets)
        self.name = name
        self.task = task
        self.kind = "image" if x.ndim == 4 else "vector"
        self.class_names = names or class_names

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


def standardize_rows(x: torch.Tensor) -> torch.Tensor:
    """Each example to mean 0 and standard deviation 1 over its own values (per-image
    standardisation); a constant example becomes all zeros.

    Shape:
        x: ``[N, ...]`` -> same.
    """
    flat = x.reshape(len(x), -1)
    mean, std = flat.mean(1, keepdim=True), flat.std(1, unbiased=False, keepdim=True)
    return ((flat - mean) / std.clamp_min(1e-6)).reshape(x.shape)


def _standardize_image(x: torch.Tensor) -> torch.Tensor:  # a module-level function: loader workers pickle it
    return standardize_rows(x[None])[0]


def standardized(ds: Dataset, where: str) -> Dataset:
    """``ds`` with every example standardised (``data.preprocess: standardize``): arrays at once,
    image files as they are read; text is refused, naming ``where``."""
    if isinstance(ds, ArrayDataset):
        return ArrayDataset(standardize_rows(ds.x), ds.targets, name=ds.name, class_names=ds.class_names, task=ds.task)
    if isinstance(ds, ImageFolderDataset):
        from torchvision import transforms as T

        ds.transform = T.Compose([ds.transform, _standardize_image])
        return ds
    raise TransferkitError(f"data.preprocess 'standardize' works on images and vectors, but {where} holds "
                           f"{getattr(ds, 'kind', 'other')} data; set data.preprocess to 'none'.")


class TextDataset(Dataset):
    """Raw strings and targets; the text backbone tokenises them."""

    def __init__(self, texts: list[str], y: Any, name: str = "texts", class_names: list[str] | None = None,
                 task: str = "classification") -> None:
        self.targets, names = check_targets(y, name, task)
        if len(texts) != len(self.targets):
            raise TransferkitError(f"Dataset '{name}': {len(texts)} texts but {len(self.targets)} labels.")
        self.texts = [str(t) for t in texts]
        self.y = torch.as_tensor(self.targets)
        self.name = name
        self.task = task
        self.kind = "text"
        self.class_names = names or class_names

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int):
        return self.texts[i], (int(self.targets[i]) if self.task == "classification" else self.y[i])


class Subset(Dataset):
    """A view on some indices of a dataset that keeps ``targets``, ``task``, ``kind`` and ``name``."""

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


def concat_datasets(datasets: list[Dataset], name: str) -> Dataset:
    """One in-memory dataset with every example of ``datasets`` in turn (e.g. the labelled source data and
    the target's labelled rows), of the first one's task type: texts stay texts, the rest become arrays."""
    task = getattr(datasets[0], "task", "classification")
    targets = np.concatenate([np.asarray(d.targets) for d in datasets])
    if datasets[0].kind == "text":
        return TextDataset([d[i][0] for d in datasets for i in range(len(d))], targets, name=name, task=task)
    xs = [d[list(range(len(d)))][0] if getattr(d, "batch_indexable", False) else
          torch.stack([d[i][0] for i in range(len(d))]) for d in datasets if len(d)]
    return ArrayDataset(torch.cat(xs), targets, name=name, task=task,
                        class_names=getattr(datasets[0], "class_names", None))


def length_order(dataset: Dataset) -> tuple[Dataset, np.ndarray]:
    """A text dataset re-ordered by text length (so batches need little padding), and the order used.

    Other datasets come back unchanged with the identity order. ``x[argsort(order)]`` undoes it.
    """
    if getattr(dataset, "kind", None) != "text":
        return dataset, np.arange(len(dataset))
    order = np.argsort([len(dataset[i][0]) for i in range(len(dataset))], kind="stable")
    return Subset(dataset, order), order


def load_npz(path: str | Path, task: str = "classification", rows: np.ndarray | None = None) -> ArrayDataset:
    """An ``.npz`` file with arrays ``x`` and ``y`` (loaded without pickle).

    ``y`` holds class indices or names ``[N]`` (classification), multi-hot 0/1 ``[N, C]``
    (multilabel) or numbers ``[N]`` / ``[N, k]`` (regression). ``rows``: keep only these examples
    (converted and checked after the cut; an error then numbers them within the sample).
    """
    path = Path(path)
    how = "save it with numpy.savez(path, x=..., y=...)"
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise TransferkitError(f"'{path}' holds a single array, not an .npz archive; {how}.")
        with data:
            missing = [k for k in ("x", "y") if k not in data.files]
            if missing:
                raise TransferkitError(f"'{path}' has arrays {data.files} but needs 'x' and 'y'; {how}.")
            x, y = data["x"], data["y"]
    except TransferkitError:
        raise
    except Exception as e:  # numpy raises OSError, ValueError, EOFError, zipfile.BadZipFile ... on bad files
        reason = " ".join(f"{type(e).__name__}: {e}".split())
        raise TransferkitError(f"Cannot read '{path}' as an .npz file ({reason}); {how} "
                               "(numbers only, no Python objects).") from None
    if y.ndim == 0 or len(y) == 0:
        raise TransferkitError(f"'{path}' holds no examples ('y' is empty or a single value); {how}.")
    if rows is None:
        return ArrayDataset(x, y, name=path.stem, task=task, source=f"'{path}'")
    if len(x) != len(y):
        raise TransferkitError(f"'{path}': {len(x)} inputs but {len(y)} labels; give one label per input.")
    return ArrayDataset(x[rows], y[rows], name=path.stem, task=task, source=f"the rows sampled from '{path}'")


def _read_text_rows(path: Path) -> list[dict]:
    """The rows of a CSV/JSONL file as dicts (kept for callers that only need the texts)."""
    return read_rows(path).rows


def load_text_file(path: str | Path, text_field: str = "text", label_field: str = "label",
                   task: str = "classification") -> TextDataset:
    """A CSV or JSONL file (optionally gzipped) with ``text`` and ``label`` columns.

    Labels are read for ``task`` by ``encode_labels``: class indices or names (names are sorted,
    numbered 0..C-1 and kept as ``class_names``), several labels per row for multilabel (a JSON
    list, or ``cat;dog`` / ``cat|dog`` in a CSV cell), numbers for regression. A row whose label
    is missing or unreadable raises an error naming the file, the row and its line.
    """
    rows = read_rows(path)
    if not rows.rows:
        raise TransferkitError(f"'{rows.path}' holds no rows; add '{text_field}','{label_field}' rows to it.")
    rows.require(text_field, label_field)
    texts = rows.column(text_field)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TransferkitError(f"{rows.where(i)}: '{text_field}' is {t!r}, not a string; write the text in "
                                   "quotes.")
    y, class_names = encode_labels(rows.column(label_field), task, rows.where, f"'{rows.path}'")
    return TextDataset(texts, y, name=rows.path.stem.split(".")[0], class_names=class_names, task=task)


LABEL_FILES = ("labels.csv", "labels.jsonl")  # an image folder's labels file, with columns file, label
_PIXEL_MODES = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}


def _check_image(root: Path, f: Path) -> tuple[int, int]:
    """The size of image ``f``, after checking that it decodes and has 8-bit channels."""
    from PIL import Image

    try:
        with Image.open(f) as im:
            im.load()
            mode, size = im.mode, im.size
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, DecompressionBombError ...
        raise TransferkitError(
            f"Image folder '{root}': '{f.relative_to(root)}' is not a readable image ({type(e).__name__}); "
            "replace or remove that file."
        ) from None
    if mode not in _PIXEL_MODES:
        raise TransferkitError(f"Image folder '{root}': '{f.relative_to(root)}' has {mode} pixels (not 8-bit); "
                               "convert it to 8-bit greyscale or RGB.")
    return size


def _image_files(root: Path, folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def scan_image_folder(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Classes and (file, label) pairs of an ImageFolder-style tree, every file checked.

    Raises a TransferkitError naming the first empty class folder or unreadable image.
    """
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise TransferkitError(
            f"Image folder '{root}' has no class sub-folders; put images in one folder per class (root/cat/1.png) "
            f"or list them in {LABEL_FILES[0]} (columns file, label)."
        )
    samples: list[tuple[Path, int]] = []
    for label, cls in enumerate(classes):
        files = _image_files(root, root / cls)
        if not files:
            raise TransferkitError(
                f"Image folder '{root}': class folder '{cls}' has no images; add images to it or remove it."
            )
        samples += [(f, label) for f in files]
    return classes, samples


def read_labels_file(root: Path, path: Path, task: str) -> tuple[list[str] | None, list[Path], np.ndarray]:
    """``(class_names, files, targets)`` of an image folder whose ``path`` (CSV or JSONL) lists one row
    per image: ``file`` (relative to ``root``) and ``label`` (read for ``task`` as in text files).

    Every image under ``root`` must have exactly one row, and every row an existing image.
    """
    rows: Rows = read_rows(path)
    if not rows.rows:
        raise TransferkitError(f"'{path}' holds no rows; add one 'file','label' row per image.")
    rows.require("file", "label")
    files, seen = [], {}
    for i, name in enumerate(rows.column("file")):
        rel = os.path.normpath(name) if isinstance(name, str) and name.strip() else ""
        if not rel or os.path.isabs(rel) or rel.split(os.sep)[0] == os.pardir:
            raise TransferkitError(f"{rows.where(i)}: {name!r} is not a path inside '{root}'; give the image's path "
                                   "relative to the folder.")
        f = root / rel
        if not f.is_file() or f.suffix.lower() not in IMAGE_SUFFIXES:
            raise TransferkitError(f"{rows.where(i)}: {name!r} is not an image file in '{root}'; check the name "
                                   f"(image types: {', '.join(sorted(IMAGE_SUFFIXES))}).")
        if rel in seen:
            raise TransferkitError(f"{rows.where(i)}: {name!r} is listed again (first in row {seen[rel] + 1}); "
                                   "give every image one row with all its labels.")
        seen[rel] = i
        files.append(f)
    for f in _image_files(root, root):
        if os.path.normpath(f.relative_to(root)) not in seen:
            raise TransferkitError(f"Image folder '{root}': '{f.relative_to(root)}' has no row in '{path.name}'; add "
                                   "one or move the image out of the folder.")
    y, class_names = encode_labels(rows.column("label"), task, rows.where, f"'{path}'")
    return class_names, files, y


class ImageFolderDataset(Dataset):
    """Images in ``root/<class>/<file>``, as torchvision's ImageFolder, or listed with their labels in
    ``root/labels.csv`` (or ``labels.jsonl``; columns ``file``, ``label``), checked up front.

    A labels file is needed for multi-label and regression targets (``cat;dog``, ``3.5``); without
    one the class folders give the classes.

    Args:
        root: the folder.
        image_size: resize to ``image_size x image_size`` (None keeps the size; the images must then
            all have one size).
        channels: 1 (greyscale) or 3 (RGB).
        transform: an extra torchvision transform applied to the tensor (e.g. normalisation).
        task: ``"classification"``, ``"multilabel"`` or ``"regression"``.
    """

    def __init__(self, root: str | Path, image_size: int | None = None, channels: int = 3, transform=None,
                 task: str = "classification") -> None:
        from torchvision import transforms as T

        root = Path(root)
        if not root.is_dir():
            raise TransferkitError(f"Image folder '{root}' does not exist; check the path.")
        if channels not in (1, 3):
            raise TransferkitError(f"ImageFolderDataset: 'channels' must be 1 or 3; got {channels}.")
        labels = next((root / n for n in LABEL_FILES if (root / n).is_file()), None)
        if labels is not None:
            self.class_names, files, y = read_labels_file(root, labels, task)
        elif task != "classification":
            raise TransferkitError(f"Image folder '{root}' has no {LABEL_FILES[0]}, which a {task} task needs; add "
                                   "one with columns file,label (one row per image).")
        else:
            self.class_names, samples = scan_image_folder(root)
            files, y = [f for f, _ in samples], np.array([lab for _, lab in samples], dtype=np.int64)
        sizes = {_check_image(root, f) for f in files}
        if len(sizes) > 1 and not image_size and transform is None:
            a, b = sorted(sizes)[:2]
            raise TransferkitError(f"Image folder '{root}' has images of different sizes ({a[0]}x{a[1]} and "
                                   f"{b[0]}x{b[1]}); set data.image_size to resize them to one size.")
        self.targets, _ = check_targets(y, root.name, task)
        self.samples = list(zip(files, torch.as_tensor(self.targets) if task != "classification" else
                                self.targets.tolist()))
        steps = [T.Grayscale(1) if channels == 1 else T.Lambda(lambda im: im.convert("RGB"))]
        if image_size:
            steps.append(T.Resize((image_size, image_size)))
        steps.append(T.ToTensor())
        if transform is not None:
            steps.append(transform)
        self.transform = T.Compose(steps)
        self.name = root.name
        self.task = task
        self.kind = "image"

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        from PIL import Image

        path, label = self.samples[i]
        with Image.open(path) as im:
            return self.transform(im), label
