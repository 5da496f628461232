"""Multi-task datasets built from the registered ones: MultiMNIST (two overlapping digits, one task
per digit) and "domains as tasks" (one task per dataset domain, optionally encoded once by a
frozen backbone such as MiniLM, with the encoded features cached on disk)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from transferkit.data.datasets import ArrayDataset, TextDataset
from transferkit.data.multimnist import draw_pairs, overlay_digits  # noqa: F401 - overlay_digits re-exported
from transferkit.data.registry import DATASETS, data_dir, load_dataset
from transferkit.data.splits import stratified_split
from transferkit.errors import TransferkitError
from transferkit.multitask.data import MultiTaskArrays


def multi_mnist(images: np.ndarray, labels: np.ndarray, n: int, seed: int, size: int = 28) -> MultiTaskArrays:
    """``n`` MultiMNIST images drawn reproducibly (``seed``) from ``images`` (``draw_pairs``): tasks
    ``left`` and ``right`` are their digits."""
    x, left, right = draw_pairs(images, labels, n, seed, size)
    return MultiTaskArrays(x, {"left": left, "right": right}, name=f"multimnist-{seed}")


def load_multi_mnist(cfg) -> tuple[MultiTaskArrays, MultiTaskArrays]:
    """(train, test) MultiMNIST from ``<data_dir>/mnist/mnist.npz``: the training images are drawn
    from MNIST's training split and the test images from its test split, so no digit image is shared."""
    path = data_dir(cfg.data_dir) / "mnist" / "mnist.npz"
    if not path.is_file():
        raise TransferkitError(f"MultiMNIST needs '{path}'; set data.data_dir or $TRANSFERKIT_DATA to the folder "
                               "holding mnist/mnist.npz.")
    d = np.load(path)
    return (multi_mnist(d["x_train"], d["y_train"], cfg.train_size, cfg.seed),
            multi_mnist(d["x_test"], d["y_test"], cfg.test_size, cfg.seed + 1))


def _limit(ds, per_task: int | None, seed: int) -> np.ndarray:
    """Indices of a stratified sample of at most ``per_task`` rows (all rows when None)."""
    y = np.asarray(ds.targets if hasattr(ds, "targets") else [ds[i][1] for i in range(len(ds))])
    if per_task is None or per_task >= len(y):
        return np.arange(len(y))
    _, keep = stratified_split(y, per_task / len(y), seed)
    return np.sort(keep)


@functools.lru_cache(maxsize=512)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """A file's SHA-256, computed once per process for a given size and modification time."""
    from transferkit.backbones.weights import sha256

    return sha256(path)


def content_digest(paths: list[Path]) -> str:
    """SHA-256 over the contents of ``paths`` (a folder: every file under it, with its name relative
    to the folder, in sorted order). What the files are called and where they live does not count."""
    h = hashlib.sha256()
    for root in paths:
        root = Path(root)
        files = sorted(f for f in root.rglob("*") if f.is_file()) if root.is_dir() else [root]
        for f in files:
            st = f.stat()
            rel = f.relative_to(root).as_posix() if root.is_dir() else ""
            h.update(f"{rel}\0{_file_sha256(str(f.resolve()), st.st_size, st.st_mtime_ns)}\n".encode())
    return h.hexdigest()


def data_files(spec: str, data_root) -> list[Path]:
    """The files a dataset spec is read from: a path itself, or a registered dataset's file under the
    data directory (the package's embedded folder for embedded ones)."""
    name = spec.partition(":")[0]
    if name not in DATASETS or Path(spec).exists():
        return [Path(spec)]
    relpath = DATASETS.get(name).relpath
    if relpath is None:
        return [Path(str(resources.files("transferkit.data") / "embedded"))]
    return [data_dir(data_root) / relpath]


def _encoder_files(cfg) -> list[Path]:
    """The files the encoder's weights come from (none for a randomly initialised encoder)."""
    if cfg.encoder_weights == "imagenet":
        from transferkit.backbones.tv import resolve_imagenet

        return [resolve_imagenet(cfg.encoder)]
    if cfg.encoder_weights:
        return [Path(cfg.encoder_weights)]
    if cfg.encoder == "hf_text":
        from transferkit.backbones.hf import minilm_path

        return [minilm_path()]
    return []


def _cache_file(cfg, spec: str, rows: np.ndarray) -> Path:
    """The feature cache's file for ``spec[rows]`` encoded by ``cfg.encoder``: keyed on the content of
    the data files and of the encoder's weights (SHA-256, cached per process by size and modification
    time), so another data directory, or a file changed in place, never reads stale features."""
    root = Path(cfg.cache_dir or os.environ.get("TRANSFERKIT_CACHE") or Path.home() / ".cache" / "transferkit") / "features"
    key = json.dumps(["v2", spec, cfg.encoder, cfg.encoder_args, hashlib.sha1(rows.tobytes()).hexdigest(),
                      content_digest(data_files(spec, cfg.data_dir)), content_digest(_encoder_files(cfg))],
                     sort_keys=True)
    return root / f"{spec.replace(':', '-').replace(os.sep, '_')}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"


def _encode(cfg, spec: str, ds, rows: np.ndarray, progress) -> np.ndarray:
    """The frozen encoder's features of ``ds[rows]``, read from / written to the feature cache."""
    from transferkit.backbones import create_backbone
    from transferkit.data.datasets import Subset
    from transferkit.finetune.feature_extraction import extract_features
    from transferkit.heads import create_head
    from transferkit.model import TransferModel

    path = _cache_file(cfg, spec, rows)
    if path.is_file():
        return np.load(path)["x"]
    if progress:
        progress(f"encoding {spec} ({len(rows)} rows) with {cfg.encoder}; cached in {path}")
    backbone = create_backbone(cfg.encoder, weights=cfg.encoder_weights, **cfg.encoder_args)
    model = TransferModel(backbone, create_head("linear", backbone.num_features, 2))
    x = extract_features(model, Subset(ds, rows)).x.numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, x=x)
    os.replace(tmp, path)
    return x


def load_domain_tasks(cfg, progress=None) -> tuple[MultiTaskArrays, MultiTaskArrays]:
    """(train, test) with one task per ``'name:domain'`` in ``cfg.tasks`` (the task is named after
    the domain), each split stratified into train and test by ``cfg.test_fraction``."""
    if len(cfg.tasks) < 2:
        raise TransferkitError("data.kind 'domains' needs data.tasks with two or more 'name:domain' entries.")
    train, test = {}, {}
    for spec in cfg.tasks:
        ds = load_dataset(spec, cfg.data_dir)
        rows = _limit(ds, cfg.per_task, cfg.seed)
        if cfg.encoder:
            x = _encode(cfg, spec, ds, rows, progress)
        elif isinstance(ds, TextDataset):
            raise TransferkitError(f"Task '{spec}' is text; set data.encoder (e.g. hf_text) to encode it.")
        elif isinstance(ds, ArrayDataset):
            x = ds.x[torch.as_tensor(rows)].numpy()
        else:
            raise TransferkitError(f"Task '{spec}' is a {type(ds).__name__}; multi-task domains need arrays or "
                                   "texts with data.encoder.")
        y = np.asarray(ds.targets)[rows]
        keep, take = stratified_split(y, cfg.test_fraction, cfg.seed)
        name = spec.rpartition(":")[2] or spec
        if name in train:
            raise TransferkitError(f"data.tasks names the domain '{name}' twice; give each task once.")
        train[name], test[name] = (x[keep], y[keep]), (x[take], y[take])
    return (MultiTaskArrays.from_tasks(train, "domains", cfg.batches),
            MultiTaskArrays.from_tasks(test, "domains:test"))
