"""Learn a stream of tasks with one strategy: train each task with the one training loop
(``engine.Trainer``), evaluate every task after each, checkpoint after each.

The result holds the accuracy matrices (class-IL and task-IL for split streams, domain-IL for
permuted/rotated/sequence streams), the random-initialisation reference for forward transfer,
and per task: wall time, peak memory, memory-buffer bytes and parameters added. A domain stream
of multi-label or regression tasks fills its matrix with the task type's score instead of the
accuracy (mAP, R²; ``ContinualResult.metric``), so forgetting and BWT keep their meaning.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil
import torch
from accelerate.utils import set_seed
from torch import nn

from transferkit.config import TrainSettings
from transferkit.continual.buffers import ReservoirBuffer
from transferkit.data.streams import Experience, Stream
from transferkit.engine import checkpoint as ckpt
from transferkit.engine.distributed import is_main_process
from transferkit.data.batches import batches
from transferkit.engine.trainer import Trainer
from transferkit.errors import TransferkitError
from transferkit.strategy import Strategy
from transferkit.metrics.continual import summary
from transferkit.model import TransferModel


@dataclass
class ContinualResult:
    stream: str
    scenario: str
    strategy: str
    tasks: list[str]
    matrices: dict[str, list[list[float]]] = field(default_factory=dict)  # setting -> R[i][j]
    random_init: dict[str, list[float]] = field(default_factory=dict)  # setting -> b[j]
    per_task: list[dict] = field(default_factory=list)
    metric: str = "accuracy"  # what the matrices hold: accuracy, or the task type's score (mAP, r2)

    @property
    def settings(self) -> list[str]:
        return list(self.matrices)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per setting: average accuracy, forgetting, BWT and FWT (fractions). Class-IL has no FWT:
        a class not trained yet is never predicted, so accuracy on a future task is near zero
        whatever the strategy (and exactly zero for iCaRL), and the figure compares nothing.
        Neither has an R² matrix: R² has no floor, so the untrained model's reference score is an
        arbitrary negative number and the difference would measure it, not transfer."""
        no_fwt = lambda setting: setting == "class_il" or self.metric == "r2"
        return {k: summary(R, None if no_fwt(k) else self.random_init.get(k))
                for k, R in self.matrices.items() if len(R) == len(self.tasks)}

    def to_dict(self) -> dict:
        return asdict(self) | {"summary": self.summary()}


def settings_of(stream: Stream) -> list[str]:
    if stream.scenario == "class":
        return ["class_il", "task_il"]
    return ["task_il"] if stream.scenario == "task" else ["domain_il"]


@torch.no_grad()
def evaluate_stream(model: TransferModel, strategy: Strategy, stream: Stream, batch_size: int = 1000) -> dict[str, list[float]]:
    """Accuracy on every task's test set, per setting (class-IL: arg-max over all classes; task-IL:
    over the task's own classes or head)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: dict[str, list[float]] = {s: [] for s in settings_of(stream)}
    task = getattr(model, "task_type", None)
    if task is not None and task.name != "classification":  # a domain stream: the task type's score per task
        for exp in stream.experiences:
            parts = [(model(x.to(device), task=exp.head).logits, torch.as_tensor(y).to(device))
                     for x, y in batches(exp.test, batch_size)]
            logits, targets = (torch.cat(p) for p in zip(*parts))
            out["domain_il"].append(task.metrics(logits, targets)[task.score])
        model.train(was_training)
        return out
    for exp in stream.experiences:
        hits = {s: 0 for s in out}
        mask = torch.full((stream.num_classes,), float("-inf"), device=device)
        if not stream.multi_head:  # task-IL with one head: only the task's own classes compete
            mask[exp.classes] = 0.0
        for x, y in batches(exp.test, batch_size):
            x, y = x.to(device), torch.as_tensor(y).to(device)
            scores = strategy.predict(model, x, exp.head)
            scores = model(x, task=exp.head).logits if scores is None else scores
            for s in out:
                masked = scores + mask if (s == "task_il" and not stream.multi_head) else scores
                hits[s] += int((masked.argmax(-1) == y).sum())
        for s in out:
            out[s].append(hits[s] / max(len(exp.test), 1))
    model.train(was_training)
    return out


def buffer_bytes(strategy: nn.Module) -> int:
    return sum(m.nbytes for m in strategy.modules() if isinstance(m, ReservoirBuffer))


class PeakMemory:
    """Peak memory while the block runs: CUDA's allocator peak on a GPU; on the CPU the largest
    resident set size seen by a sampling thread (every 20 ms), so each task gets its own peak."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak, self._stop = device, 0.0, threading.Event()

    def _sample(self) -> None:
        proc = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, proc.memory_info().rss / 2**20)
            self._stop.wait(0.02)

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, psutil.Process().memory_info().rss / 2**20)


def add_task_heads(model: TransferModel, stream: Stream) -> None:
    """One linear head per task (replacing the single head) for multi-head task-incremental streams."""
    if stream.multi_head and set(model.heads) != {e.head for e in stream.experiences}:
        width = model.backbone.num_features
        model.heads = nn.ModuleDict({e.head: nn.Linear(width, len(e.classes)) for e in stream.experiences})


def check_stream(strategy: Strategy, stream: Stream) -> None:
    """Let every continual part of ``strategy`` refuse ``stream`` (one sentence) before any training."""
    for part in strategy.modules():
        if callable(getattr(part, "check_stream", None)):
            part.check_stream(stream)


def train_stream(model: TransferModel, strategy: Strategy, stream: Stream, settings: TrainSettings,
                 run_dir: str | Path | None = None, resume: bool = False, progress: bool | None = None,
                 deterministic: bool = False, eval_batch_size: int = 1000, on_task=None) -> ContinualResult:
    """Learn ``stream`` task by task.

    With ``run_dir``, each task appends a record to ``metrics.jsonl`` and writes a checkpoint
    (model, strategy state incl. buffers and importances, results so far); ``resume=True`` goes on
    after the last finished task and ends with the same results as an uninterrupted run.

    Example:
        >>> result = train_stream(model, create_continual_strategy("er", size=200), split_mnist, settings)
        >>> result.summary()["class_il"]["average_accuracy"]
    """
    check_stream(strategy, stream)
    task = getattr(model, "task_type", None)
    if task is not None and task.name != stream.task:
        raise TransferkitError(f"The model predicts '{task.name}' targets but stream '{stream.name}' holds "
                               f"'{stream.task}' targets; build both with the same task type (model.task).")
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    set_seed(settings.seed)
    add_task_heads(model, stream)
    root = Path(run_dir) if run_dir else None
    result = ContinualResult(stream.name, stream.scenario, getattr(strategy, "label", strategy.name),
                             [e.name for e in stream.experiences], metric=task.score if task is not None else "accuracy")
    model = strategy.prepare_model(model)
    done = 0
    if resume:
        done = _resume(model, strategy, stream, root, result)
    else:
        result.random_init = evaluate_stream(model, strategy, stream, eval_batch_size)
        result.matrices = {s: [] for s in result.random_init}
    for exp in stream.experiences[done:]:
        record = _learn_task(model, strategy, exp, settings, progress, stream, eval_batch_size, result)
        if root is not None and is_main_process():  # under several processes, the first one writes
            with open(root / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            ckpt.save_task_checkpoint(root / "checkpoints", exp.index, model, strategy,
                                      {"done": exp.index + 1, "result": result.to_dict()})
        if on_task is not None:
            on_task(record)
    return result


def _learn_task(model, strategy, exp: Experience, settings: TrainSettings, progress, stream: Stream,
                eval_batch_size: int, result: ContinualResult) -> dict:
    n_params = sum(p.numel() for p in model.parameters())
    strategy.before_task(model, exp)
    trainer = Trainer(settings.model_copy(update={"seed": settings.seed + 1000 * exp.index}), progress=progress)
    t0 = time.perf_counter()
    with PeakMemory(trainer.accelerator.device) as memory:
        history = trainer.fit(model, strategy, exp.train, task=exp, head=exp.head)
    seconds = time.perf_counter() - t0
    row = evaluate_stream(model, strategy, stream, eval_batch_size)
    for s, accs in row.items():
        result.matrices[s].append(accs)
    record = {"task": exp.index + 1, "name": exp.name, "metric": result.metric, "seconds": round(seconds, 3),
              "peak_memory_mb": round(memory.peak, 1),
              "buffer_bytes": buffer_bytes(strategy),
              "new_params": sum(p.numel() for p in model.parameters()) - n_params,
              "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
              "train_loss": [h.get("train/task") for h in history]}
    record |= {f"accuracy/{s}": accs for s, accs in row.items()}
    record |= {f"seen_accuracy/{s}": sum(accs[:exp.index + 1]) / (exp.index + 1) for s, accs in row.items()}
    result.per_task.append(record)
    return record


def _resume(model, strategy, stream: Stream, root: Path | None, result: ContinualResult) -> int:
    path = ckpt.latest_checkpoint(root / "checkpoints") if root else None
    if path is None:
        raise TransferkitError(f"Nothing to resume in '{root}': it has no task checkpoint; run without --resume.")
    state = ckpt.read_task_checkpoint(path, model, strategy)
    saved = state["result"]
    if saved["tasks"] != result.tasks:
        raise TransferkitError(f"The checkpoint in '{root}' is for tasks {saved['tasks']}, not this stream's "
                               f"{result.tasks}; resume with the run's own config.")
    result.matrices, result.random_init, result.per_task = saved["matrices"], saved["random_init"], saved["per_task"]
    with open(root / "metrics.jsonl", "w", encoding="utf-8") as f:  # drop records of a task that did not finish
        f.writelines(json.dumps(r) + "\n" for r in result.per_task)
    return int(state["done"])
