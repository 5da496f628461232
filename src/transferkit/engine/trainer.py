"""The one training loop. Strategies plug in through value-returning hooks (``transferkit.strategy``)."""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from torch.utils.data import DataLoader, Dataset, Sampler

from transferkit import collective
from transferkit.config import TrainSettings
from transferkit.engine import checkpoint as ckpt
from transferkit.engine.distributed import check_strategy
from transferkit.engine.evaluate import evaluate, move
from transferkit.engine.progress import EpochProgress
from transferkit.errors import TrainingDiverged, TransferkitError
from transferkit.losses import task_losses
from transferkit.model import TransferModel
from transferkit.strategy import Batch, Phase, Step, Strategy, all_parameters_phase
from transferkit.tasks import TaskType


class EpochSampler(Sampler[int]):
    """A fresh permutation per epoch, fixed by (seed, epoch): resuming replays the same order.

    The epoch is set with ``use_epoch`` (not ``set_epoch``, which Accelerate's loader calls
    with its own per-loader counter that restarts at 0 after a resume).
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def use_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class TensorBatches(Sampler[torch.Tensor]):
    """The sampler's order cut into index tensors of ``batch_size`` (for datasets indexed by batch)."""

    def __init__(self, sampler: EpochSampler, batch_size: int) -> None:
        self.sampler, self.batch_size = sampler, batch_size

    def __iter__(self):
        return iter(torch.tensor(list(self.sampler), dtype=torch.long).split(self.batch_size))

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)


class ShardedBatches(Sampler[torch.Tensor]):
    """This process's share of every batch of ``batches`` (index tensors): the batch cut into
    ``processes`` parts as equal as can be (``tensor_split``), so N processes see between them exactly
    the batches one process would. A batch with fewer rows than processes (an epoch's last) is left
    out in every process. ``as_lists`` gives lists, for a DataLoader's ``batch_sampler``."""

    def __init__(self, batches, rank: int, processes: int, as_lists: bool = False) -> None:
        self.batches, self.rank, self.processes, self.as_lists = batches, rank, processes, as_lists

    def __iter__(self):
        for idx in self.batches:
            if len(idx) >= self.processes:
                part = torch.as_tensor(idx).tensor_split(self.processes)[self.rank]
                yield part.tolist() if self.as_lists else part

    def __len__(self) -> int:
        return sum(len(idx) >= self.processes for idx in self.batches)


class IndexedBatches:
    """Batches of a dataset indexed by whole index tensors, without a DataLoader's per-batch machinery."""

    def __init__(self, dataset: Dataset, batches: TensorBatches) -> None:
        self.dataset, self.batches = dataset, batches

    def __iter__(self):
        return ((*self.dataset[idx], idx) for idx in self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def is_plain_sgd(opt: torch.optim.Optimizer) -> bool:
    """SGD without momentum, weight decay or Nesterov: the update is just ``p -= lr * grad``."""
    return type(opt) is torch.optim.SGD and all(
        g["momentum"] == 0 and g["weight_decay"] == 0 and not g["nesterov"] and not g.get("maximize")
        for g in opt.param_groups)


@torch.no_grad()
def sgd_update(opt: torch.optim.SGD) -> None:
    """``p -= lr * grad`` for every parameter with a gradient: torch.optim.SGD's update without its
    per-call wrappers (profiling hooks, compile guards), which cost more than the maths at batch 10."""
    for group in opt.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                p.add_(p.grad, alpha=-group["lr"])


def clear_grads(opt: torch.optim.Optimizer) -> None:
    for group in opt.param_groups:
        for p in group["params"]:
            p.grad = None


@dataclass
class TrainState:
    """Everything besides weights and optimizer needed to resume exactly."""

    epoch: int = -1  # last finished epoch
    best: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)


def make_optimizer(settings: TrainSettings, groups: list[dict]) -> torch.optim.Optimizer:
    groups = [g for g in groups if g["params"]]
    if settings.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    return torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay)


def frozen_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The largest submodules that have parameters, none of them trainable."""
    out: list[torch.nn.Module] = []

    def visit(m: torch.nn.Module) -> None:
        params = list(m.parameters())
        if params and not any(p.requires_grad for p in params):
            out.append(m)
        else:
            for child in m.children():
                visit(child)

    visit(model)
    return out


def check_labels(dataset: Dataset | None, task: TaskType, n_outputs: int | None, where: str) -> None:
    """The dataset's targets suit ``task`` and a head of ``n_outputs`` (None: not known yet); else one
    error sentence naming ``where`` (the data's file or name) and the fix."""
    if dataset is None or len(dataset) == 0:
        return
    task.check_targets(dataset.targets, n_outputs, where)


class Trainer:
    """Train a ``TransferModel`` with a strategy; writes metrics.jsonl and checkpoints to ``run_dir``.

    Example:
        >>> Trainer(TrainSettings(epochs=3)).fit(model, create_strategy("full"), train_ds, val_ds)
    """

    def __init__(self, settings: TrainSettings, run_dir: str | Path | None = None, progress: bool | None = None,
                 callbacks: list[Callable[[dict], None]] = (),
                 evaluators: list[Callable[[torch.nn.Module], dict[str, float]]] = ()) -> None:
        self.s = settings
        self.evaluators = list(evaluators)  # extra metrics after each epoch (e.g. label-free target scores)
        self.run_dir = Path(run_dir) if run_dir else None
        self.progress = progress
        self.callbacks = list(callbacks)
        # Accelerate keeps one process-wide state; each Trainer brings its own precision / accumulation
        # settings, so start that state afresh (the process group, if any, is kept).
        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()
        # gradient accumulation is the trainer's own (windows that end with each epoch), not Accelerate's
        # Under several processes (DDP), train.batch_size is the global batch: every process takes its
        # share of each batch of the one epoch order (ShardedBatches), so N processes take the steps
        # one process takes.
        # DDP is set up once, before each phase chooses what trains: parameters frozen in a phase (a
        # two-stage head phase, a frozen backbone, another task's head) are left out of its reduction
        self.accelerator = Accelerator(cpu=settings.device == "cpu", mixed_precision=settings.mixed_precision,
                                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
        if settings.device == "cuda" and self.accelerator.device.type != "cuda":
            raise TransferkitError("train.device is 'cuda' but no GPU is visible; set train.device to 'auto' or 'cpu'.")
        n = self.accelerator.num_processes
        if settings.batch_size < n:
            raise TransferkitError(f"train.batch_size {settings.batch_size} is smaller than the {n} processes that share "
                                   f"each batch; set it to at least {n} (it is the global batch).")

    # -- one epoch --------------------------------------------------------------------------
    def _train_epoch(self, model, strategy, loader, optimizer, phase: Phase, bar: EpochProgress,
                     head: str | None = None, epoch: int = 0) -> dict[str, float]:
        acc, sums, steps = self.accelerator, {}, 0
        model.train()
        for module in frozen_modules(acc.unwrap_model(model)):  # frozen parts behave as at inference (BatchNorm statistics, dropout)
            module.eval()
        device, plain = acc.device, acc.unwrap_model(model)
        tasks = plain.tasks  # each head's task type gives its loss
        # Without a loss scaler, Accelerate's optimizer wrapper adds only per-step checks (package
        # look-ups, signature inspection) that dominate small models; step the optimizer itself
        # then, and plain SGD as one update.
        accum, n = self.s.grad_accum, len(loader)
        plain_step = acc.scaler is None
        opt = optimizer.optimizer if plain_step else optimizer
        update = (lambda: sgd_update(opt)) if plain_step and is_plain_sgd(opt) else None
        # Under several processes, a strategy that sets the gradients itself forms the whole batch's
        # gradient from its processes' parts (Step.reduce); DDP's own reduction is off then, and the
        # trainer averages what the strategy leaves (identical parts stay as they are).
        manual = strategy.sets_gradients and acc.num_processes > 1
        own = [p for p in strategy.parameters() if p.requires_grad]  # e.g. a domain discriminator: not in DDP's model

        def step_now() -> None:  # an optimizer step inside a strategy's backward (MCD's steps A and B)
            opt.step() if update is None else update()
            opt.zero_grad(set_to_none=True) if update is None else clear_grads(opt)
        for item in loader:
            x, y, index = item[0], item[1], (item[2] if len(item) > 2 else None)
            scale = self._share(len(x), device)
            raw = Batch(move(x, device), move(y, device), task=head, precomputed=phase.precomputed, index=index,
                        progress=(epoch + steps / n) / self._epochs)
            batch = strategy.prepare_batch(raw)
            # gradients accumulate over windows of `accum` batches; the epoch's last window may be
            # shorter and steps too, so no gradient crosses an epoch (or a checkpoint)
            sync = accum == 1 or (steps + 1) % accum == 0 or steps + 1 == n
            with acc.no_sync(model) if manual or not sync else nullcontext():
                out = model(batch.x, task=batch.task, precomputed=batch.precomputed)
                losses = task_losses(out, batch.targets, tasks, batch.task, batch.unlabelled)  # each task's loss, keyed by task
                terms = strategy.named_loss_terms(batch, out, plain)  # its parameters by their own names
                window = min(accum, n - steps // accum * accum)  # batches in this accumulation window
                terms, loss = strategy.backward(losses, terms, Step(
                    plain, batch, out, steps, self._backward(plain_step, window, scale), step_now,
                    lambda ts, w=scale: collective.mean_over_processes(ts, w)))
            if sync and acc.num_processes > 1:
                collective.average_gradients([*own, *(plain.parameters() if manual else ())])
            if sync:
                strategy.after_backward(model, batch)  # e.g. A-GEM projects the gradient
                if self.s.max_grad_norm:
                    acc.clip_grad_norm_(model.parameters(), self.s.max_grad_norm)
                opt.step() if update is None else update()
            strategy.after_step(model, raw, out)  # e.g. replay stores the stream batch, SI its path integral
            if sync:
                opt.zero_grad(set_to_none=True) if update is None else clear_grads(opt)
            for k, v in terms.items():
                sums.setdefault(k, []).append(v.detach() * scale if scale != 1.0 else v.detach())  # the batch's, averaged below
            steps += 1
            if steps % 10 == 0 and not self._finite(loss):
                break
            bar.advance()
        strategy.after_epoch(plain)  # e.g. a loss weighter's per-epoch statistics
        means = {k: torch.stack(v).mean() for k, v in sums.items()}  # each term over the steps it was logged
        if acc.num_processes > 1:  # and over the processes, each of which saw its share of every batch
            means = {k: acc.reduce(v.to(device), "mean") for k, v in means.items()}
        return {f"train/{k}": float(v) for k, v in means.items()}

    def _finite(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite in every process (so that all of them stop together)."""
        ok = torch.isfinite(loss.detach()).all().float()
        if self.accelerator.num_processes > 1:
            ok = self.accelerator.reduce(ok.reshape(1), "sum") == self.accelerator.num_processes
        return bool(ok)

    def _share(self, rows: int, device) -> float:
        """Under N processes, ``N x`` this process's share of the batch's rows: its mean loss times this
        is what DDP's average of the processes' gradients needs to give the mean over the whole batch
        (1.0 when the shares are equal, and in one process). Terms of the weights alone come out the
        same, since the factors average to one."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return 1.0
        total = acc.reduce(torch.tensor(float(rows), device=device), "sum")
        return rows * acc.num_processes / float(total)

    def _backward(self, plain_step: bool, window: int, scale: float = 1.0) -> Callable[[torch.Tensor], None]:
        """The backward a strategy calls: the loss divided by the batches in this accumulation
        window (and times this process's ``scale``, see ``_share``), then plain or through Accelerate
        (fp16 loss scaling)."""
        factor = scale / window
        if plain_step and factor == 1.0:
            return torch.Tensor.backward
        backward = torch.Tensor.backward if plain_step else self.accelerator.backward
        return lambda loss: backward(loss * factor if factor != 1.0 else loss)

    # -- the loop ---------------------------------------------------------------------------
    def fit(self, model: TransferModel, strategy: Strategy, train: Dataset, val: Dataset | None = None,
            resume: bool = False, task=None, head: str | None = None) -> list[dict]:
        """Train on ``train``; ``task`` (a name or a continual-learning experience) goes to
        ``strategy.after_task``, ``head`` names the head the batches train (None: the default)."""
        s, acc = self.s, self.accelerator
        set_seed(s.seed)
        if strategy.sets_gradients and (acc.scaler is not None or s.grad_accum > 1):
            raise TransferkitError(f"Strategy '{getattr(strategy, 'label', strategy.name)}' sets the gradients itself, so it "
                                   "runs without fp16 loss scaling or gradient accumulation; set train.mixed_precision "
                                   "to 'no' or 'bf16' and train.grad_accum to 1.")
        model = strategy.prepare_model(model)
        if acc.num_processes > 1:
            check_strategy(model, strategy)
        phases = strategy.phases(model, s.epochs, s.lr) or [all_parameters_phase(model, s.epochs, s.lr)]
        own = strategy.own_parameter_groups(s.lr)  # e.g. a domain discriminator: trained in every phase
        phases = [Phase(p.name, p.epochs, [*p.groups, *own], p.precomputed, p.extra) for p in phases] if own else phases
        self._epochs = sum(p.epochs for p in phases)  # the run's length, for Batch.progress
        state, optim_state, ckpt_root = TrainState(), None, self.run_dir / "checkpoints" if self.run_dir else None
        ever_trainable = {id(p) for ph in phases for g in ph.groups for p in g["params"]}
        self._ckpt_keys = ckpt.trainable_state_keys(model, ever_trainable)
        self._strategy = strategy
        if resume:
            state, optim_state = self._resume(model)
        model.to(acc.device)
        strategy.to(acc.device)  # its own state (anchors, buffers) lives beside the model
        model = acc.prepare(model)
        plain = acc.unwrap_model(model)
        start = 0
        for phase in phases:
            end = start + phase.epochs
            # Early stopping ends a phase, not the run: patience counts within each phase (the
            # count is part of the checkpoint, so a resumed phase goes on with it).
            resumed = start <= state.epoch < end - 1  # interrupted inside this phase
            if end <= state.epoch + 1 or (resumed and self._out_of_patience(state)):
                start = end
                continue
            if not resumed:
                state.bad_epochs = 0
            optimizer, loader, sampler, val_data = self._start_phase(plain, strategy, phase, train, val,
                                                                      optim_state if resumed else None)
            for epoch in range(max(start, state.epoch + 1), end):
                t0 = time.perf_counter()
                sampler.use_epoch(epoch)
                set_seed(s.seed * 1000 + epoch)  # dropout etc. replay identically after a resume
                with EpochProgress(len(loader), self.progress, f"epoch {epoch + 1}/{s.epochs} [{phase.name}]") as bar:
                    record = {"epoch": epoch + 1, "phase": phase.name} | self._train_epoch(
                        model, strategy, loader, optimizer, phase, bar, head, epoch)
                if not all(math.isfinite(v) for k, v in record.items() if k.startswith("train/")):
                    self._diverged(epoch, state)
                if val_data is not None:
                    record |= evaluate(plain, val_data, s.eval_batch_size, phase.precomputed, prefix="val/")
                for measure in self.evaluators:
                    record |= measure(plain)
                record["seconds"] = round(time.perf_counter() - t0, 4)
                if self._end_epoch(plain, optimizer, state, record, epoch):
                    break  # on to the next phase
            start = end
        if self.run_dir and state.best_epoch is not None and s.restore_best and val is not None and len(val):
            ckpt.load_weights(plain, ckpt_root / f"epoch-{state.best_epoch - 1:04d}" / ckpt.MODEL_FILE, partial=True)
        strategy.after_task(plain, task if task is not None else getattr(plain, "default_task", None))
        return state.history

    def _start_phase(self, plain, strategy, phase: Phase, train, val, optim_state: dict | None):
        """Freeze what the phase does not train; build its optimizer (with ``optim_state`` when
        the phase was interrupted), its data (e.g. cached features) and its loader."""
        s, acc = self.s, self.accelerator
        trainable = {id(p) for g in phase.groups for p in g["params"]}
        for p in plain.parameters():
            p.requires_grad_(id(p) in trainable)
        optimizer = make_optimizer(s, phase.groups)
        if optim_state is not None:
            optimizer.load_state_dict(optim_state)
        train_data = strategy.prepare_data(plain, train, phase)
        val_data = strategy.prepare_data(plain, val, phase) if val is not None and len(val) else None
        sampler = EpochSampler(len(train_data), s.seed)
        indexable, n = getattr(train_data, "batch_indexable", False) and not s.num_workers, acc.num_processes
        if indexable or n > 1:
            # in-memory tensors: index a whole batch at once instead of item by item and collating;
            # multi-task data from several datasets brings its own (mixed or alternating) batches.
            # Several processes: each takes its share of every batch (not Accelerate's sharding,
            # which pads an epoch's last batch with rows from its start)
            plan = getattr(train_data, "batch_plan", lambda *_: None)(sampler, s.batch_size) if indexable else None
            batches = plan or TensorBatches(sampler, s.batch_size)
            if n > 1:
                batches = ShardedBatches(batches, acc.process_index, n, as_lists=not indexable)
                if plan is None and 0 < len(train_data) % s.batch_size < n:
                    warnings.warn(f"Each epoch's last batch has {len(train_data) % s.batch_size} rows, fewer than the {n} "
                                  "processes, and is left out, so the run differs from one process's; choose "
                                  "train.batch_size so that it is not.", stacklevel=2)
            loader = IndexedBatches(train_data, batches) if indexable else DataLoader(
                train_data, batch_sampler=batches, num_workers=s.num_workers)
        else:
            loader = acc.prepare(DataLoader(train_data, batch_size=s.batch_size, sampler=sampler,
                                            num_workers=s.num_workers))
        return acc.prepare(optimizer), loader, sampler, val_data

    def _end_epoch(self, model, optimizer, state: TrainState, record: dict, epoch: int) -> bool:
        """Log, track the best epoch, checkpoint; return True to stop early."""
        s = self.s
        state.epoch = epoch
        state.history.append(record)
        value = record.get(s.monitor)
        improved = value is not None and (state.best is None or (value > state.best if s.mode == "max" else value < state.best))
        if improved:
            state.best, state.best_epoch, state.bad_epochs = value, epoch + 1, 0
        elif value is not None:
            state.bad_epochs += 1
        if self.run_dir and self.accelerator.is_main_process:
            with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            keep = {state.best_epoch - 1} if state.best_epoch else set()
            ckpt.save_checkpoint(self.run_dir / "checkpoints", epoch, model, optimizer, state.__dict__, keep,
                                 self._ckpt_keys, self._strategy)
        self.accelerator.wait_for_everyone()  # the checkpoint is on disk before any process reads it
        for cb in self.callbacks:
            cb(record)
        return self._out_of_patience(state)

    def _out_of_patience(self, state: TrainState) -> bool:
        return self.s.patience is not None and state.bad_epochs >= self.s.patience

    def _diverged(self, epoch: int, state: TrainState) -> None:
        where = f" in '{self.run_dir / 'checkpoints'}'" if self.run_dir else ""
        kept = f"the last good checkpoint (epoch {state.epoch + 1}) is kept{where}" if state.epoch >= 0 else "no epoch finished"
        raise TrainingDiverged(
            f"Training stopped in epoch {epoch + 1}: the loss became NaN or infinite; {kept}. "
            "Lower train.lr or check the inputs for extreme values."
        )

    def _resume(self, model: TransferModel) -> tuple[TrainState, dict | None]:
        path = ckpt.latest_checkpoint(self.run_dir / "checkpoints") if self.run_dir else None
        if path is None:
            raise TransferkitError(f"Nothing to resume in '{self.run_dir}': it has no checkpoint; train without --resume.")
        raw, optim_state = ckpt.read_checkpoint(path, model, self._strategy)
        return TrainState(**raw), optim_state
