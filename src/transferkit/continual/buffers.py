"""Replay memories: a reservoir sample of the stream (Vitter, 1985) and a class-balanced one
(Chrysakis & Moens, 2020). Both keep inputs compactly: images that came from 8-bit pixels (every
value a multiple of 1/255) are stored as ``uint8`` and decoded on the way out.

A buffer holds ``x``, ``y`` and any extra per-sample tensors given to ``add`` (DER's logits, a
task index), all as tensors of this module, so the buffer is saved and restored with the
strategy's state in every checkpoint.
"""

from __future__ import annotations

import torch

from transferkit.continual.state import GrowingState
from transferkit.errors import TransferkitError


def _quantizable(x: torch.Tensor) -> bool:
    """True when every value is k/255 for an integer k in 0..255 (images read from 8-bit files)."""
    if not x.is_floating_point() or x.numel() == 0:
        return False
    scaled = x.detach().float() * 255.0
    return bool(((scaled - scaled.round()).abs().max() < 1e-3) and scaled.min() >= 0 and scaled.max() <= 255.5)


def balanced_subset(keys: torch.Tensor, quota: int) -> torch.Tensor:
    """Indices of at most ``quota`` randomly chosen items for each distinct key (a class or a task).

    Shape:
        keys: ``[N]``; returns ``[M]`` sorted indices, ``M <= quota * distinct keys``.
    """
    keys = keys.cpu()
    parts = [(keys == k).nonzero().flatten() for k in torch.unique(keys)]
    return torch.cat([idx[torch.randperm(len(idx))[:quota]] for idx in parts]).sort().values


class ReservoirBuffer(GrowingState):
    """A uniform sample of everything ever added, of at most ``size`` items (reservoir sampling).

    Args:
        size: the most items it holds.
        compact: store 8-bit images as ``uint8`` (4x less memory than ``float32``).

    Example:
        >>> buf = ReservoirBuffer(200)
        >>> buf.add(torch.rand(10, 1, 28, 28), torch.zeros(10, dtype=torch.long))
        >>> len(buf)
        10
    """

    def __init__(self, size: int, compact: bool = True) -> None:
        super().__init__()
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise TransferkitError(f"ReservoirBuffer: 'size' must be an integer >= 1; got {size!r}.")
        self.size, self.compact = size, compact
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    def __len__(self) -> int:
        return min(int(self.seen), self.size)

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored samples."""
        return sum(b.numel() * b.element_size() for n, b in self._buffers.items() if n != "seen")

    # -- storage --------------------------------------------------------------------------------
    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        if "x" not in self._buffers:  # the first batch decides the storage type
            self.set_state("x_uint8", torch.tensor(bool(self.compact and _quantizable(x))))
            return x
        if bool(self.x_uint8) and not _quantizable(x):  # a later batch is not 8-bit: widen what is stored
            self.set_state("x", self.x.float() / 255.0)
            self.x_uint8.fill_(False)
        return x

    def _store(self, name: str, pos: torch.Tensor, value: torch.Tensor) -> None:
        if name not in self._buffers:
            dtype = torch.uint8 if name == "x" and bool(self.x_uint8) else value.dtype
            self.set_state(name, torch.zeros((self.size, *value.shape[1:]), dtype=dtype, device=value.device))
        target = self._buffers[name]
        if name == "x" and target.dtype == torch.uint8:
            value = (value.detach() * 255.0).round_().clamp_(0, 255).to(torch.uint8)
        target[pos] = value.detach().to(target.dtype)

    def _positions(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices into the batch to keep, their slots): Algorithm R, one draw per item."""
        counts = int(self.seen) + torch.arange(n)
        draws = (torch.rand(n) * (counts + 1).float()).long()
        slots = torch.where(counts < self.size, counts, draws)
        keep = (slots < self.size).nonzero().flatten()
        return keep, slots[keep]

    def add(self, x: torch.Tensor, y: torch.Tensor, **extra: torch.Tensor) -> None:
        """Offer a batch to the buffer. Shape: x ``[B, ...]``, y ``[B]``, extras ``[B, ...]``."""
        x = self._encode(x)
        keep, slots = self._positions(len(y))
        if len(slots) != len(torch.unique(slots)):  # two items drew one slot: the later one wins
            last = {int(s): int(k) for k, s in zip(keep, slots)}
            slots, keep = torch.tensor(list(last)), torch.tensor(list(last.values()))
        items = {"x": x, "y": y} | extra
        for name, value in items.items():
            self._store(name, slots.to(value.device), value[keep.to(value.device)])
        self.seen += len(y)

    # -- reading --------------------------------------------------------------------------------
    def _decode(self, name: str, idx) -> torch.Tensor:
        value = self._buffers[name][idx]
        return value.float() / 255.0 if name == "x" and value.dtype == torch.uint8 else value

    def get(self, idx) -> dict[str, torch.Tensor]:
        names = [n for n in self._buffers if n not in ("seen", "x_uint8")]
        return {n: self._decode(n, idx) for n in names}

    def sample(self, n: int) -> dict[str, torch.Tensor]:
        """``n`` stored items drawn without replacement (all of them if fewer are stored)."""
        idx = torch.randperm(len(self))[: min(n, len(self))]
        return self.get(idx.to(self.seen.device))

    def all(self) -> dict[str, torch.Tensor]:
        return self.get(slice(0, len(self)))


class ClassBalancedBuffer(ReservoirBuffer):
    """Class-balanced reservoir sampling (CBRS): when full, a new item replaces one of the class
    that holds the most slots; within the largest class, replacement is a reservoir draw, so each
    class keeps a uniform sample of its own stream."""

    def __init__(self, size: int, compact: bool = True) -> None:
        super().__init__(size, compact)
        self.register_buffer("class_seen", torch.zeros(0, dtype=torch.long))

    def add(self, x: torch.Tensor, y: torch.Tensor, **extra: torch.Tensor) -> None:
        x = self._encode(x)
        top = int(y.max()) + 1
        if top > len(self.class_seen):
            self.class_seen = torch.cat([self.class_seen, torch.zeros(top - len(self.class_seen), dtype=torch.long,
                                                                       device=self.class_seen.device)])
        items = {"x": x, "y": y} | extra
        for i, c in enumerate(y.tolist()):
            slot = self._slot(c)
            self.class_seen[c] += 1
            self.seen += 1
            if slot is not None:
                pos = torch.tensor([slot])
                for name, value in items.items():
                    self._store(name, pos.to(value.device), value[i:i + 1])

    def _slot(self, c: int) -> int | None:
        filled = len(self)
        if filled < self.size:
            return filled
        labels = self.y[:filled]
        counts = torch.bincount(labels, minlength=len(self.class_seen))
        largest = counts.max()
        if counts[c] < largest:  # take a slot from a largest class
            donors = (counts == largest).nonzero().flatten()
            donor = int(donors[torch.randint(len(donors), ())])
            where = (labels == donor).nonzero().flatten()
            return int(where[torch.randint(len(where), ())])
        # c is a largest class: reservoir within the class
        if float(torch.rand(())) * (int(self.class_seen[c]) + 1) < int(counts[c]):
            where = (labels == c).nonzero().flatten()
            return int(where[torch.randint(len(where), ())])
        return None
