"""A model zoo of small_cnn source models for ``transferkit rank`` (issue 13, must-show 1).

Every source dataset and target task is written as an ``.npz`` (arrays ``x``, ``y``) under
``WORK/data`` from the files in $TRANSFERKIT_DATA (/work/shared/data), and every candidate is a run
directory trained with ``tk.train`` under ``WORK/zoo``. One input view for all of them: grey images
at 28x28 (USPS's 16x16 upsampled), each image standardised (``data.preprocess: standardize``).

Sources (nothing here holds a target's test row; see ``targets``):
  mnist_full      MNIST train, 60,000 images, 10 classes, 1 epoch
  mnist_500       500 MNIST train images (seeded), 10 classes, 30 epochs
  split_01        Split-MNIST task 1: digits 0-1 of MNIST train, 1 epoch
  split_23        Split-MNIST task 2: digits 2-3 (labels 0, 1), 1 epoch
  permuted        20,000 MNIST train images under one fixed pixel permutation (the first task of
                  ``data.streams.permuted`` with seed 0), 1 epoch
  mnist_shuffled  10,000 MNIST train images with shuffled labels (features that memorise), 2 epochs
  usps_half       USPS half A (898 of the 1,800 JDA USPS rows, half of each class, seeded; the USPS
                  target uses the other half, B), 20 epochs
  omniglot_bg     Omniglot background: 30 alphabets, 964 characters, 19,280 images, 2 epochs
  omniglot_bg_long  the same, 10 epochs
  random          random:small_cnn (no training)

Targets:
  usps            USPS half B (902 rows): 10 labelled images per class to fine-tune on, 802 to test
  omniglot20      20 characters of the evaluation alphabets (which no source saw, seeded draw), drawers
                  1-5 to fine-tune on (100 images), drawers 6-20 to test (300)

Run:  PYTHONPATH=src python benchmarks/select/zoo.py --work /work/bench_out/zoo
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

DATA = Path(os.environ.get("TRANSFERKIT_DATA", "/work/shared/data"))
VIEW = {"image_size": 28, "channels": 1, "preprocess": "standardize"}  # every candidate and target
BACKBONE = {"backbone": "small_cnn", "backbone_args": {"in_channels": 1}}
SEED = 0
USPS_SHOTS = 10  # labelled target images per class
OMNIGLOT_WAYS, OMNIGLOT_TRAIN_DRAWERS = 20, 5

# name -> (epochs, batch size) of the source training
SOURCES = {"mnist_full": (1, 128), "mnist_500": (30, 64), "split_01": (1, 128), "split_23": (1, 128),
           "permuted": (1, 128), "mnist_shuffled": (2, 128), "usps_half": (20, 64), "omniglot_bg": (2, 128),
           "omniglot_bg_long": (10, 128)}
DATA_OF = {"omniglot_bg_long": "omniglot_bg"}  # sources that share another's data file
TARGETS = ("usps", "omniglot20")


def _save(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    _, y = np.unique(y, return_inverse=True)  # labels 0..C-1
    np.savez(path, x=x, y=y.astype(np.int64))


def _usps_halves() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The 1,800 USPS rows split in two stratified halves (seeded): A for a source, B for the target."""
    from transferkit.data import load_dataset

    d = np.load(Path(load_dataset.__code__.co_filename).parent / "embedded" / "mnist_usps.npz")
    x, y = d["x_usps"], d["y_usps"]
    rng = np.random.default_rng(SEED)
    a = np.concatenate([rng.permutation(np.flatnonzero(y == c))[: (y == c).sum() // 2] for c in range(10)])
    b = np.setdiff1d(np.arange(len(y)), a)
    return x[a], y[a], x[b], y[b]


def write_data(work: Path) -> None:
    """Every source and target as ``WORK/data/<name>.npz`` (targets: ``<name>_train`` / ``<name>_test``)."""
    out = work / "data"
    out.mkdir(parents=True, exist_ok=True)
    if (out / "omniglot20_test.npz").is_file():
        return
    rng = np.random.default_rng(SEED)
    m = np.load(DATA / "mnist" / "mnist.npz")
    x, y = m["x_train"], m["y_train"]
    _save(out / "mnist_full.npz", x, y)
    i = rng.choice(len(y), 500, replace=False)
    _save(out / "mnist_500.npz", x[i], y[i])
    for a, b in ((0, 1), (2, 3)):
        keep = (y == a) | (y == b)
        _save(out / f"split_{a}{b}.npz", x[keep], y[keep])
    perm = torch.randperm(28 * 28, generator=torch.Generator().manual_seed(SEED)).numpy()  # streams.permuted's task 1
    i = rng.choice(len(y), 20000, replace=False)
    _save(out / "permuted.npz", x[i].reshape(len(i), -1)[:, perm].reshape(-1, 28, 28), y[i])
    i = rng.choice(len(y), 10000, replace=False)
    _save(out / "mnist_shuffled.npz", x[i], rng.permutation(y[i]))
    xa, ya, xb, yb = _usps_halves()
    _save(out / "usps_half.npz", xa, ya)
    train = np.concatenate([rng.permutation(np.flatnonzero(yb == c))[:USPS_SHOTS] for c in range(10)])
    test = np.setdiff1d(np.arange(len(yb)), train)
    _save(out / "usps_train.npz", xb[train], yb[train])
    _save(out / "usps_test.npz", xb[test], yb[test])
    o = np.load(DATA / "omniglot" / "omniglot.npz")
    _save(out / "omniglot_bg.npz", o["x_background"], o["y_background"])
    chars = rng.choice(len(o["alphabet_evaluation"]), OMNIGLOT_WAYS, replace=False)
    ye, de = o["y_evaluation"], o["drawer_evaluation"]
    rows = np.isin(ye, chars)
    for part, keep in (("train", de < OMNIGLOT_TRAIN_DRAWERS), ("test", de >= OMNIGLOT_TRAIN_DRAWERS)):
        _save(out / f"omniglot20_{part}.npz", o["x_evaluation"][rows & keep], ye[rows & keep])


def source_config(work: Path, name: str) -> dict:
    epochs, batch = SOURCES[name]
    data = work / "data" / f"{DATA_OF.get(name, name)}.npz"
    return {"name": name,
            "data": {"dataset": str(data), "val_fraction": 0.0, "test_fraction": 0.1, "seed": SEED, **VIEW},
            "model": dict(BACKBONE), "strategy": {"name": "full"},
            "train": {"epochs": epochs, "batch_size": batch, "lr": 1e-3, "seed": SEED, "device": "cpu"}}


def build_zoo(work: Path) -> list[str]:
    """Train every missing source run into ``WORK/zoo/<name>``; the candidate list (run dirs + random)."""
    import transferkit as tk

    write_data(work)
    for name in SOURCES:
        run = work / "zoo" / name
        if not (run / "summary.json").is_file():
            tk.train(source_config(work, name), out=run, overwrite=True, progress=False)
            print(name, json.loads((run / "summary.json").read_text()).get("test/accuracy"), flush=True)
    return candidates(work)


def source_rows(work: Path) -> list[dict]:
    """What each source run trained on, for how long, and its accuracy on its own held-out 10 %."""
    rows = []
    for name in SOURCES:
        s = json.loads((work / "zoo" / name / "summary.json").read_text())
        classes = int(np.load(work / "data" / f"{DATA_OF.get(name, name)}.npz")["y"].max()) + 1
        rows.append({"source": name, "train_examples": s["train_examples"], "classes": classes,
                     "epochs": s["epochs_run"], "train_seconds": s["train_seconds"],
                     "test_accuracy": round(s["test/accuracy"], 4)})
    return rows


def candidates(work: Path) -> list[str]:
    return [str(work / "zoo" / n) for n in SOURCES] + ["random:small_cnn"]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/bench_select"))
    torch.set_num_threads(1)
    print(build_zoo(ap.parse_args().work))
