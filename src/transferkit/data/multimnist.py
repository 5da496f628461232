"""MultiMNIST images (Sabour et al., 2017; the protocol of Sener & Koltun, 2018): two MNIST digits
overlaid, one shifted up-left and one down-right, drawn reproducibly from a seed. The multi-task
benchmark makes each digit a task (``multitask/datasets.py``); the named dataset ``multimnist``
gives both digits as one 10-way multi-hot target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from transferkit.errors import TransferkitError

SIZES = {"train": 20000, "test": 5000}  # images per domain (MNIST's training / test split), as the multi-task benchmark
SEEDS = {"train": 0, "test": 1}  # the multi-task benchmark's draws (data.seed 0)


def overlay_digits(left: np.ndarray, right: np.ndarray, size: int = 28, shift: int = 4) -> np.ndarray:
    """The left digit placed ``shift`` pixels up and left, the right digit ``shift`` down and right,
    on a canvas of ``28 + 2 * shift``, overlapping pixels taking the brighter value, resized to ``size``.

    Shape:
        left, right: ``[N, 28, 28]`` grey levels in [0, 1]; returns ``[N, 1, size, size]`` float32.
    """
    n, h, w = left.shape
    canvas = np.zeros((n, h + 2 * shift, w + 2 * shift), dtype=np.float32)
    canvas[:, :h, :w] = left
    canvas[:, 2 * shift:, 2 * shift:] = np.maximum(canvas[:, 2 * shift:, 2 * shift:], right)
    out = F.interpolate(torch.from_numpy(canvas).unsqueeze(1), size=(size, size), mode="bilinear",
                        align_corners=False, antialias=True)
    return out.numpy()


def draw_pairs(images: np.ndarray, labels: np.ndarray, n: int, seed: int,
               size: int = 28) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` MultiMNIST images drawn with ``seed`` from ``images``, each pairing two different
    images; returns (images ``[n, 1, size, size]``, left digits ``[n]``, right digits ``[n]``)."""
    if n < 1 or len(images) < 2:
        raise TransferkitError(f"MultiMNIST needs n >= 1 and at least two source images; got n={n}, {len(images)} images.")
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(images), n)
    b = (a + rng.integers(1, len(images), n)) % len(images)  # never the same image twice
    x = images.astype(np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)
    return overlay_digits(x[a], x[b], size), labels[a].astype(np.int64), labels[b].astype(np.int64)


def multi_hot(left: np.ndarray, right: np.ndarray, classes: int = 10) -> np.ndarray:
    """Both digits as one multi-hot row (a single 1 when the two digits are equal). Shape: ``[n, classes]``."""
    y = np.zeros((len(left), classes), dtype=np.float32)
    y[np.arange(len(left)), left] = 1.0
    y[np.arange(len(right)), right] = 1.0
    return y


def read_mnist_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST's ``split`` ("train" / "test") images and labels from ``<root>/mnist/mnist.npz``."""
    d = np.load(root / "mnist" / "mnist.npz")
    return d[f"x_{split}"], d[f"y_{split}"]
