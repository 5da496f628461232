"""What every deep domain-adaptation strategy shares: unlabelled target rows in each batch.

A strategy here holds the unlabelled target data (``use_unlabelled``, called once when the run is
built). Its ``prepare_batch`` appends as many target rows as the batch has labelled rows and marks
them in ``Batch.unlabelled``, so the trainer's one forward pass runs both domains through the backbone
together (BatchNorm sees both) and the task loss uses the labelled rows only. The target order is a
fresh permutation per pass over the target data, fixed by (seed, pass), and the count of rows drawn
is a checkpointed buffer: a resumed run draws the same target batches.

Under several processes (DDP) each process holds a share of every batch; it draws the whole batch's
target rows and keeps its share of them, and ``split`` gathers the rows of every process, so each
term is the one-process term of the whole batch (``transferkit.collective``).
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, default_collate

from transferkit import collective
from transferkit.data.batches import batches
from transferkit.errors import TransferkitError
from transferkit.model import Output, TransferModel
from transferkit.strategy import Batch, Compose, Strategy, check_number


class TargetRows:
    """Rows of the unlabelled target data, by index: in-memory tensors when the data index by batch
    (arrays), item by item otherwise (texts, image files)."""

    def __init__(self, dataset: Dataset) -> None:
        self.n = len(dataset)
        self.dataset = dataset
        self.x = None
        if getattr(dataset, "batch_indexable", False) or getattr(getattr(dataset, "base", None), "batch_indexable", False):
            xs = [b[0] if isinstance(b, (tuple, list)) else b for b in _all_batches(dataset)]
            self.x = torch.cat(xs)

    def take(self, idx: torch.Tensor):
        if self.x is not None:
            return self.x[idx]
        items = [self.dataset[int(i)][0] for i in idx]
        return items if isinstance(items[0], str) else default_collate(items)


def _all_batches(dataset: Dataset):
    if getattr(dataset, "batch_indexable", False):
        return list(batches(dataset, 1024))
    return [default_collate([dataset[i] for i in range(a, min(a + 1024, len(dataset)))])
            for a in range(0, len(dataset), 1024)]


def concat_inputs(a, b):
    """Two batches of inputs as one: tensors concatenated, lists of strings joined."""
    if isinstance(a, list):
        return a + list(b)
    return torch.cat([a, b.to(a.device)])


class DomainAdaptation(Strategy):
    """Base of the deep domain-adaptation strategies: draws the unlabelled target rows of each batch.

    Subclasses add their terms in ``loss_terms`` with ``self.split(batch, out)``, which returns the
    labelled (source) and unlabelled (target) parts of the features and logits.
    """

    name = "domain_adaptation"
    needs_unlabelled = True

    def __init__(self, weight: float = 1.0, seed: int | None = None) -> None:
        super().__init__()
        check_number(type(self).__name__, "weight", weight, low=0)
        if seed is not None:
            check_number(type(self).__name__, "seed", seed, integer=True)
        self.weight = float(weight)  # multiplier of the method's term
        self.seed_arg = seed  # order of the target rows (and CDAN's random maps); None: the run's train.seed
        self.seed = 0 if seed is None else int(seed)
        self.target: TargetRows | None = None
        self.register_buffer("drawn", torch.zeros((), dtype=torch.long))  # target rows drawn so far

    def use_unlabelled(self, dataset: Dataset) -> None:
        """The unlabelled target data to align with (the run's ``data.unlabelled``)."""
        if dataset is None or len(dataset) == 0:
            raise TransferkitError(f"Strategy '{self.name}' needs unlabelled target data; set data.unlabelled to a "
                                   "dataset ('name:domain' or a path) of the target domain.")
        self.target = TargetRows(dataset)

    def own_parameter_groups(self, lr: float) -> list[dict]:
        own = list(self.parameters())  # a discriminator, a second classifier: trained beside the model
        return [{"params": own, "lr": lr}] if own else []

    def prepare_model(self, model: TransferModel) -> TransferModel:
        if self.seed_arg is None:  # follow the run's seed (train.seed, set just before prepare_model)
            self.seed = torch.initial_seed() % 2**31
        return model

    def prepare_data(self, model, dataset, phase):
        if phase.precomputed:
            raise TransferkitError(f"Strategy '{self.name}' aligns the backbone's features, so it cannot run on cached "
                                   "features; compose it with a strategy that trains the backbone (not feature_extraction).")
        return dataset

    def _target_indices(self, k: int) -> torch.Tensor:
        """The next ``k`` target rows: passes over the target data, each in its own seeded order."""
        out, drawn, n = [], int(self.drawn), self.target.n
        while len(out) < k:
            lap, pos = divmod(drawn, n)
            if getattr(self, "_lap", None) != (self.seed, lap):  # one permutation per pass, not per step
                self._lap = (self.seed, lap)
                self._order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 100_003 + lap))
            take = self._order[pos:pos + k - len(out)].tolist()
            out += take
            drawn += len(take)
        self.drawn.fill_(drawn)
        return torch.tensor(out, dtype=torch.long)

    def prepare_batch(self, batch: Batch) -> Batch:
        if self.target is None:
            raise TransferkitError(f"Strategy '{self.name}' was given no unlabelled target data; set data.unlabelled "
                                   "(or call use_unlabelled) before training.")
        if batch.precomputed or batch.unlabelled is not None:
            return batch
        if isinstance(batch.targets, dict):
            raise TransferkitError(f"Strategy '{self.name}' adapts a single-task model; a multi-task model's batches "
                                   "(targets per task) cannot take unlabelled target rows.")
        n = len(batch.targets)  # several processes: this process's share of the batch's labelled rows
        x_t = self.target.take(collective.share(self._target_indices(collective.total(n, batch.targets.device))))
        device = batch.targets.device
        filler = torch.zeros((n, *batch.targets.shape[1:]), dtype=batch.targets.dtype, device=device)
        mask = torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)]).to(device)
        return Batch(concat_inputs(batch.x, x_t), torch.cat([batch.targets, filler]), batch.task, batch.precomputed,
                     batch.index, mask, batch.progress)

    @staticmethod
    def split(batch: Batch, out: Output) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(src_features, tgt_features, src_logits, tgt_logits)`` of a batch from ``prepare_batch``, in
        float32 (under bf16 autocast the model's outputs are bf16; the terms and discriminators are not).
        The labelled rows count as the source side, labelled target rows (``data.shots``) included.
        Under several processes, each part holds the rows of every process (the whole batch's)."""
        tgt = batch.unlabelled
        f, z = out.features.float(), out.logits.float()
        return tuple(collective.gather_rows(part) for part in (f[~tgt], f[tgt], z[~tgt], z[tgt]))


def unlabelled_parts(strategy: Strategy) -> list[DomainAdaptation]:
    """The parts of ``strategy`` (itself, or those of a ``Compose``) that need unlabelled target data."""
    if isinstance(strategy, Compose):
        return [p for s in strategy.parts for p in unlabelled_parts(s)]
    return [strategy] if getattr(strategy, "needs_unlabelled", False) else []


def use_unlabelled(strategy: Strategy, dataset: Dataset | None) -> None:
    """Give the unlabelled target data to every part of ``strategy`` that aligns domains."""
    for part in unlabelled_parts(strategy):
        part.use_unlabelled(dataset)
