"""N-way K-shot episodes over any transferkit dataset, with disjoint meta-train / validation / test classes.

An episode (Vinyals et al., 2016) draws ``n_way`` classes of one split, then ``k_shot`` support and
``q_queries`` query examples of each, relabelled ``0..n_way-1`` in the order drawn. Episode ``i`` of a
sampler is a pure function of ``(seed, i)``, so the same seed gives the same episodes in any order
(and a resumed run draws the episodes it would have drawn).

Rotation augmentation (Santoro et al., 2016; Vinyals et al., 2016, on Omniglot): each class ``c``
becomes four classes ``(c, r)``, its images rotated by ``r * 90`` degrees; the images must be square.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from transferkit.errors import TransferkitError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Episode:
    """One N-way K-shot task.

    Shape:
        support_x: ``[n_way * k_shot, ...]`` (class-major: ``k_shot`` examples of class 0, then of 1 ...);
        support_y: ``[n_way * k_shot]`` in ``0..n_way-1``; query_x: ``[n_way * q_queries, ...]``;
        query_y: ``[n_way * q_queries]``; classes: the dataset class of each episode label, with its
        rotation ``(class, r)`` (``r = 0`` without augmentation).
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    classes: tuple[tuple[int, int], ...]


def _counts(n: int, sizes: Sequence[float | int]) -> list[int]:
    """How many of ``n`` classes each split gets: integer counts as given, fractions rounded (the last
    split takes the rest)."""
    if len(sizes) != len(SPLITS) or any(s < 0 for s in sizes):
        raise TransferkitError(f"split_classes needs three sizes >= 0 (train, val, test); got {list(sizes)}.")
    if all(isinstance(s, (int, np.integer)) for s in sizes):
        if sum(sizes) > n:
            raise TransferkitError(f"split_classes: the counts {list(sizes)} add up to {sum(sizes)}, more than the "
                                   f"{n} classes; lower them.")
        return [int(s) for s in sizes]
    if abs(sum(sizes) - 1.0) > 1e-6:
        raise TransferkitError(f"split_classes: the fractions {list(sizes)} add up to {sum(sizes):g}, not 1; "
                               "give fractions that add up to 1 or integer counts.")
    train, val = round(sizes[0] * n), round(sizes[1] * n)
    return [train, val, n - train - val]


def split_classes(classes: Sequence[int], sizes: Sequence[float | int], seed: int) -> dict[str, list[int]]:
    """Disjoint meta-train / meta-validation / meta-test class sets drawn from ``classes`` with ``seed``.

    ``sizes`` are three fractions adding up to 1, or three integer counts (at most ``len(classes)``
    in all). Each set is returned sorted; the result depends only on the arguments.

    Example:
        >>> split_classes(range(10), (6, 2, 2), seed=0)["test"]   # two classes never met in training
    """
    classes = sorted(int(c) for c in classes)
    if len(set(classes)) != len(classes):
        raise TransferkitError("split_classes: a class is listed twice; list each class once.")
    counts = _counts(len(classes), sizes)
    order = np.random.default_rng(seed).permutation(len(classes))
    bounds = np.cumsum([0] + counts)
    return {s: sorted(classes[i] for i in order[bounds[k]:bounds[k + 1]]) for k, s in enumerate(SPLITS)}


def check_disjoint(splits: dict[str, Sequence[int]]) -> None:
    """Refuse class sets that share a class (a meta-test class seen in meta-training)."""
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = sorted(set(splits[a]) & set(splits[b]))
            if common:
                raise TransferkitError(f"The meta-{a} and meta-{b} classes share class {common[0]}; give each "
                                       "class to one split only.")


class EpisodeSampler:
    """N-way K-shot episodes over ``classes`` of ``dataset`` (anything with class-index ``targets``
    and ``__getitem__`` returning ``(x, y)``).

    Example:
        >>> splits = split_classes(np.unique(ds.targets), (0.6, 0.2, 0.2), seed=0)
        >>> train = EpisodeSampler(ds, splits["train"], n_way=5, k_shot=1, q_queries=15, seed=1)
        >>> ep = train.episode(0)   # ep.support_x [5, ...], ep.query_y [75]
    """

    def __init__(self, dataset, classes: Sequence[int], n_way: int, k_shot: int, q_queries: int,
                 rotations: bool = False, seed: int = 0, name: str = "meta-train") -> None:
        targets = np.asarray(dataset.targets)
        label = f"The {name} episodes"
        for arg, value, least in (("n_way", n_way, 2), ("k_shot", k_shot, 1), ("q_queries", q_queries, 1),
                                  ("seed", seed, 0)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < least:
                raise TransferkitError(f"{label}: '{arg}' must be an integer >= {least}; got {value!r}.")
        if targets.ndim != 1 or targets.dtype.kind not in "iu":
            raise TransferkitError(f"{label} need class-index targets, and '{getattr(dataset, 'name', 'data')}' holds "
                                   "multi-hot rows or values; use classification data.")
        if rotations and getattr(dataset, "kind", "image") != "image":
            raise TransferkitError(f"{label}: rotation augmentation works on images, and "
                                   f"'{getattr(dataset, 'name', 'data')}' holds {dataset.kind} data; set rotations "
                                   "to false.")
        self.index = {int(c): np.flatnonzero(targets == c) for c in sorted(set(int(c) for c in classes))}
        for c, idx in self.index.items():
            if len(idx) < k_shot + q_queries:
                raise TransferkitError(f"{label}: class {c} has {len(idx)} examples, fewer than k_shot + q_queries = "
                                       f"{k_shot + q_queries}; lower k_shot or q_queries or leave the class out.")
        if rotations and self.index:  # rot90 swaps height and width: 90-degree classes would not stack
            shape = tuple(dataset[int(next(iter(self.index.values()))[0])][0].shape)
            if len(shape) < 2 or shape[-1] != shape[-2]:
                raise TransferkitError(f"{label}: rotations need square images, and "
                                       f"'{getattr(dataset, 'name', 'data')}' has images of shape {shape}; set "
                                       "rotations to false or resize the images to a square (data.image_size).")
        self.classes = [(c, r) for c in self.index for r in (range(4) if rotations else [0])]
        if n_way > len(self.classes):
            raise TransferkitError(f"{label}: n_way={n_way} exceeds the {len(self.classes)} classes of the split; "
                                   "lower n_way or give the split more classes.")
        self.dataset, self.n_way, self.k_shot, self.q_queries, self.seed = dataset, n_way, k_shot, q_queries, seed

    def episode(self, i: int) -> Episode:
        """Episode ``i``: a pure function of ``(seed, i)``."""
        rng = np.random.default_rng([self.seed, i])
        drawn = [self.classes[j] for j in rng.choice(len(self.classes), self.n_way, replace=False)]
        k = self.k_shot
        support, query = [], []
        for c, r in drawn:
            rows = rng.choice(self.index[c], k + self.q_queries, replace=False)
            items = [self._item(int(row), r) for row in rows]
            support += items[:k]
            query += items[k:]
        labels = torch.arange(self.n_way)
        return Episode(_stack(support), labels.repeat_interleave(k), _stack(query),
                       labels.repeat_interleave(self.q_queries), tuple(drawn))

    def _item(self, row: int, rotation: int):
        x = self.dataset[row][0]
        return torch.rot90(x, rotation, dims=(-2, -1)) if rotation else x

    def batch(self, start: int, tasks: int) -> Episode:
        """Episodes ``start .. start + tasks - 1`` stacked as a meta-batch (``[T, ...]`` tensors)."""
        eps = [self.episode(start + t) for t in range(tasks)]
        return Episode(*(torch.stack([getattr(e, f) for e in eps]) for f in
                         ("support_x", "support_y", "query_x", "query_y")), tuple(e.classes for e in eps))

    def __iter__(self) -> Iterator[Episode]:
        i = 0
        while True:
            yield self.episode(i)
            i += 1


def _stack(items: list):
    """A tensor of the examples, or their list when they are not tensors (texts)."""
    return torch.stack(items) if isinstance(items[0], torch.Tensor) else items
