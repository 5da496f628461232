"""The Python API that the CLI mirrors: ``train``, ``load_run``, ``evaluate_run``, ``predict``, ``rank``."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from transferkit.config import MetaConfig, RunConfig, dump_config, parse_config
from transferkit.data import Subset, load_dataset, make_splits
from transferkit.adapt import unlabelled_parts, use_unlabelled
from transferkit.data.datasets import ArrayDataset, IMAGE_SUFFIXES, TextDataset, _read_text_rows, concat_datasets
from transferkit.engine import checkpoint as ckpt, distributed
from transferkit.engine.evaluate import evaluate, predict_logits
from transferkit.engine.trainer import Trainer, check_labels
from transferkit.errors import TransferkitError
from transferkit.finetune import Strategy, create_strategy
from transferkit.finetune.saved import build_model, head_state, load_model, task_type
from transferkit.model import TransferModel
from transferkit.report import run_report
from transferkit.runs.domain import SCORES, TargetScores, distance_report, features, sample
from transferkit.tasks import TaskType


@dataclass
class Prepared:
    """Everything a run needs, built and validated before any training or file writing."""

    cfg: RunConfig
    train: Dataset
    val: Dataset | None
    test: Dataset | None
    num_classes: int  # the head's outputs: classes, or target columns for regression
    model: TransferModel
    strategy: Strategy
    unlabelled: Dataset | None = None  # unlabelled target data (domain adaptation)
    guard: Dataset | None = None  # labelled target rows the negative-transfer guard validates on (split_data)
    auto: dict | None = None  # strategy auto: the choice, its reason and the facts it was made from


def build_data(cfg: RunConfig) -> tuple[Dataset, Dataset | None, Dataset | None]:
    """Train / validation / test data with the targets of ``model.task``, each file checked against
    the task before it is split."""
    return split_data(cfg)[:3]


def split_data(cfg: RunConfig) -> tuple[Dataset, Dataset | None, Dataset | None, Dataset | None]:
    """``build_data``'s train / validation / test data and the target's guard validation rows: the rows
    of ``data.guard_fraction`` when it is set, else None. Never the validation split: a run picks its best
    epoch on that one, which would flatter every run the guard compares."""
    d, task = cfg.data, task_type(cfg)
    full = _load_checked(d.dataset, cfg, task)
    test_frac = 0.0 if d.test else d.test_fraction
    # with source data the validation rows come from the source: target labels are never used to choose
    sp = make_splits(full.targets, seed=d.seed, val_fraction=0.0 if d.source else d.val_fraction,
                     test_fraction=test_frac, shots=d.shots, fraction=d.label_fraction, guard_fraction=d.guard_fraction)
    test = _load_checked(d.test, cfg, task) if d.test else (Subset(full, sp.test) if len(sp.test) else None)
    train, val = Subset(full, sp.train), (Subset(full, sp.val) if len(sp.val) else None)
    guard = Subset(full, sp.guard) if len(sp.guard) else None
    if d.source:  # domain adaptation: the labelled source data, then the target's labelled rows
        source = _load_checked(d.source, cfg, task)
        ssp = make_splits(source.targets, seed=d.seed, val_fraction=d.val_fraction, test_fraction=0.0)
        train = concat_datasets([Subset(source, ssp.train), train], name=f"{d.source} + {d.dataset}")
        train.source_rows = len(ssp.train)  # the first rows are the source's, then the target's labelled ones
        val = Subset(source, ssp.val) if len(ssp.val) else None
    return train, val, test, guard


def _load_checked(spec: str, cfg: RunConfig, task: TaskType, labels: bool = True) -> Dataset:
    """``spec`` read with the targets of ``task`` and checked against it (errors name ``spec``);
    ``labels=False`` for unlabelled data, whose targets are never read."""
    d = cfg.data
    ds = load_dataset(spec, d.data_dir, d.image_size, d.channels, task=task.name, preprocess=d.preprocess)
    if labels:
        check_labels(ds, task, None, f"'{spec}'")
    return ds


def _check_input_kind(backbone_kind: str, data_kind: str, cfg: RunConfig) -> None:
    if (backbone_kind == "text") != (data_kind == "text"):
        raise TransferkitError(
            f"Backbone '{cfg.model.backbone}' takes {backbone_kind} inputs but dataset '{cfg.data.dataset}' holds "
            f"{data_kind} data; choose a matching backbone (`transferkit list backbones`)."
        )


def prepare(cfg: RunConfig) -> Prepared:
    """Load and split the data, build model and strategy, check labels: fail here, not mid-training."""
    train, val, test, guard = split_data(cfg)
    task, d = task_type(cfg), cfg.data
    seen = [ds.targets for ds in (train, val, test) if ds is not None and len(ds)]
    num_classes = cfg.model.num_classes or max(task.outputs(t) for t in seen)
    for ds, spec in ((train, d.dataset), (val, d.dataset), (test, d.test or d.dataset)):
        check_labels(ds, task, num_classes, f"'{spec}'")
    cfg, auto = _resolve_auto(cfg, train, task, num_classes)
    strategy = create_strategy(cfg.strategy.name, **cfg.strategy.args)
    model = build_model(cfg, num_classes)
    _check_input_kind(model.backbone.input_kind, train.kind, cfg)
    unlabelled = _unlabelled(cfg, strategy, task)
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"num_classes": num_classes})})
    return Prepared(cfg, train, val, test, num_classes, model, strategy, unlabelled, guard, auto)


def _resolve_auto(cfg: RunConfig, train: Dataset, task: TaskType, num_classes: int) -> tuple[RunConfig, dict | None]:
    """``strategy: auto`` replaced by the strategy ``select.auto.choose`` picks from what it measures on the data
    and the untrained model (``runs.auto``); other configs unchanged."""
    from transferkit.runs.auto import AUTO, check_args, resolve

    if cfg.strategy.name != AUTO:
        return cfg, None
    check_args(cfg.strategy.args)
    if task.name != "classification":
        raise TransferkitError(f"strategy auto chooses from class labels per class, and model.task is '{task.name}'; "
                               "name the strategy instead of auto.")
    spec = cfg.data.unlabelled
    unlabelled = _load_checked(spec, cfg, task, labels=False) if spec else None
    resolved, choice, facts = resolve(cfg, build_model(cfg, num_classes), train, unlabelled, num_classes)
    return resolved, {"strategy": choice.strategy, "args": choice.args, "model": choice.model,
                      "reason": choice.reason, "facts": asdict(facts)}


def _unlabelled(cfg: RunConfig, strategy: Strategy, task: TaskType) -> Dataset | None:
    """``data.unlabelled`` read (without its labels) and handed to the strategy's domain-adaptation parts;
    a strategy that needs it and a config without it are refused here, before any training."""
    spec, parts = cfg.data.unlabelled, unlabelled_parts(strategy)
    if (parts or spec) and task.name != "classification":
        raise TransferkitError(f"Domain adaptation (data.unlabelled, strategy '{cfg.strategy.name}') works on class "
                               f"labels, and model.task is '{task.name}'; use model.task 'classification' or train "
                               "without data.unlabelled and domain-adaptation strategies.")
    if parts and spec is None:
        raise TransferkitError(f"Strategy '{cfg.strategy.name}' adapts to unlabelled target data; set data.unlabelled "
                               "to the target domain's data ('name:domain' or a path).")
    if spec is None:
        return None
    ds = _load_checked(spec, cfg, task, labels=False)
    use_unlabelled(strategy, ds)
    return ds


def check_run_dir(out: Path, overwrite: bool, resume: bool) -> None:
    """Refuse to replace an existing run unless ``overwrite``, or to resume what is not a run; writes nothing."""
    if resume:
        if not (out / "config.yaml").is_file():
            raise TransferkitError(f"Cannot resume '{out}': it is not a run directory (no config.yaml); check the path.")
    elif out.exists() and any(out.iterdir()) and not overwrite:
        raise TransferkitError(f"Run directory '{out}' already exists; pass --overwrite to replace it or choose another --out.")


def open_run_dir(out: Path, overwrite: bool, resume: bool, device: str, config_text: str | None) -> bool:
    """Check ``out`` in every process alike (before any writes), start the processes (under several),
    then let process 0 prepare ``out`` and write ``config.yaml`` (``config_text``; None: leave it);
    returns whether this process writes the run directory."""
    check_run_dir(out, overwrite, resume)
    main = distributed.start(device)
    if main:
        prepare_run_dir(out, overwrite, resume)
        if config_text is not None:
            (out / "config.yaml").write_text(config_text, encoding="utf-8")
    distributed.barrier()
    return main


def prepare_run_dir(out: Path, overwrite: bool, resume: bool) -> None:
    """Refuse to replace an existing run unless ``overwrite``; ``resume`` continues it in place."""
    check_run_dir(out, overwrite, resume)
    if resume:
        return
    if out.exists() and any(out.iterdir()):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    history: list[dict]
    model: TransferModel
    guard_correct: np.ndarray | None = None  # per guard validation row (split_data): 1 where the prediction is right


def guard_correct(model: TransferModel, rows: Dataset | None, batch_size: int = 256) -> np.ndarray | None:
    """1 where the model's class prediction of a guard validation row is right, else 0 (None without rows or
    for a task type other than classification, which the guard does not compare).

    Shape:
        returns ``[N]`` for the ``N`` rows.
    """
    if rows is None or model.task_type.name != "classification":
        return None
    logits, targets = predict_logits(model, rows, batch_size)
    return (model.task_type.predict(logits) == targets).numpy().astype(np.int8)


def _with_guard(summary: dict, correct: np.ndarray | None) -> dict:
    """``summary`` with the accuracy on the guard validation rows and their number, when there are some."""
    if correct is None:
        return summary
    return summary | {"guard/accuracy": float(correct.mean()), "guard_examples": len(correct)}


def train(config: RunConfig | dict | str | Path, out: str | Path | None = None, overwrite: bool = False,
          resume: bool = False, progress: bool | None = None, callbacks: list[Callable[[dict], None]] = (),
          overrides: list[str] | None = None, guard: bool = False) -> RunResult:
    """Train one run from a config; write config.yaml, metrics.jsonl, checkpoints/, model.safetensors,
    summary.json and report.html into ``out``.

    ``guard=True`` (the CLI's ``--guard``) also trains the from-scratch baseline (and the source-only one
    when it applies) on the same split and seed into ``out/guard/``, compares them with the run on the
    target's validation rows (never the test set; ``runs.guard``) and records the verdict as
    ``summary["guard"]``, with a one-sentence ``warning`` when the transfer is not better beyond noise.

    Example:
        >>> res = train({"data": {"dataset": "mnist_usps:usps", "shots": 10}, "strategy": {"name": "full"}},
        ...             out="runs/usps-full")
    """
    from transferkit.config import load_config

    if isinstance(config, (str, Path)):
        cfg = load_config(config, overrides)
    elif isinstance(config, dict):
        cfg = parse_config(config, overrides=overrides)
    else:
        cfg = parse_config(config.model_dump(mode="json"), overrides=overrides) if overrides else config
    note = None
    if guard:
        from transferkit.runs.guard import check_guard, guard_rows

        check_guard(cfg)
        cfg, note = guard_rows(cfg)
    p = prepare(cfg)
    named = out is not None or bool(cfg.name)  # else a time-stamped name, which processes could disagree on
    out = Path(out or default_run_dir(cfg.name))
    if resume:
        saved = (out / "config.yaml").read_text() if (out / "config.yaml").is_file() else None
        if saved is not None and saved != dump_config(p.cfg):
            raise TransferkitError(f"Cannot resume '{out}' with a different config; use its config.yaml or start a new run.")
    if distributed.world_size() > 1:  # what would stop the run, refused in every process alike before any writes
        if not named:
            raise TransferkitError("Under several processes the run directory must be named; pass --out (or give "
                                   "the config a name).")
        distributed.check_run(p.cfg.strategy.name, guard)
    main = open_run_dir(out, overwrite, resume, p.cfg.train.device, dump_config(p.cfg))
    t0 = time.perf_counter()
    measures, before = [], None
    if p.unlabelled is not None:  # domain adaptation: label-free scores each epoch, distances before / after
        source_rows = Subset(p.train, np.arange(getattr(p.train, "source_rows", len(p.train))))
        measures = [TargetScores(p.unlabelled, source_rows, p.val if cfg.data.source else None,
                                 cfg.train.eval_batch_size)]
        probes = (sample(source_rows), sample(p.unlabelled))
        before = tuple(features(p.model, ds) for ds in probes)
    history = Trainer(p.cfg.train, out, progress, callbacks, measures).fit(p.model, p.strategy, p.train, p.val,
                                                                          resume=resume)
    seconds = time.perf_counter() - t0
    model = p.model
    if main:
        ckpt.save_weights(model, out / ckpt.MODEL_FILE)
    summary = {"name": cfg.name, "strategy": p.cfg.strategy.name, "dataset": cfg.data.dataset,
               "train_examples": len(p.train), "epochs_run": len(history), "train_seconds": round(seconds, 3),
               "trainable_parameters": trainable_parameters(model, p.strategy, cfg),
               "total_parameters": model.num_parameters(),
               "class_names": getattr(p.train, "class_names", None)}
    if p.auto is not None:
        summary["auto"] = p.auto
    if hasattr(model.backbone, "fusion_weights"):
        summary["fusion_weights"] = [round(float(w), 4) for w in model.backbone.fusion_weights().detach()]
    if p.test is not None:
        summary |= evaluate(model, p.test, cfg.train.eval_batch_size, prefix="test/")
        summary["test_examples"] = len(p.test)
    correct = guard_correct(model, p.guard, cfg.train.eval_batch_size)
    summary = _with_guard(summary, correct)
    if before is not None:
        summary["selection"] = selection_summary(history, cfg.train)
        summary["domain_distance"] = distance_report(before, tuple(features(model, ds) for ds in probes), out,
                                                     feature_map=cfg.report.feature_map)
    if guard:
        from transferkit.runs.guard import baselines, verdict

        summary["guard"] = verdict(p.cfg.strategy.name, correct, baselines(p.cfg, out / "guard"), note)
    if main:
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        run_report(out, summary)
    distributed.barrier()
    return RunResult(out, summary, history, model, correct)


def default_run_dir(name: str | None) -> Path:
    """``runs/<name>``, or ``runs/run-<date>-<time>`` for a config without a name."""
    return Path("runs") / (name or time.strftime("run-%Y%m%d-%H%M%S"))


def selection_summary(history: list[dict], settings) -> dict:
    """Which score chose the kept weights (``train.monitor``), at which epoch, with the label-free scores
    of that epoch."""
    rows = [r for r in history if settings.monitor in r]
    if not rows or not settings.restore_best:
        return {"monitor": None, "epoch": history[-1]["epoch"] if history else None}
    best = (max if settings.mode == "max" else min)(rows, key=lambda r: r[settings.monitor])
    return {"monitor": settings.monitor, "epoch": best["epoch"]} | {k: best[k] for k in SCORES if k in best}


def source_only(config: RunConfig | dict, out: str | Path, overwrite: bool = False) -> RunResult | None:
    """The source model on the target test set, untrained: the backbone and head of ``model.weights``
    when that file holds a head for the same labels (else None, and nothing is written). Writes
    config.yaml, summary.json and report.html into ``out``, as ``train`` does."""
    cfg = config if isinstance(config, RunConfig) else parse_config(config)
    if not cfg.model.weights:
        return None
    p = prepare(cfg)
    head = head_state(cfg.model.weights, p.model)
    if head is None or p.test is None:
        return None
    p.model.heads[p.model.default_task].load_state_dict(head)
    out = Path(out)
    prepare_run_dir(out, overwrite, resume=False)
    (out / "config.yaml").write_text(dump_config(p.cfg), encoding="utf-8")
    ckpt.save_weights(p.model, out / ckpt.MODEL_FILE)
    summary = {"name": cfg.name, "strategy": "source_only", "dataset": cfg.data.dataset, "train_examples": 0,
               "epochs_run": 0, "train_seconds": 0.0, "trainable_parameters": 0,
               "total_parameters": p.model.num_parameters(), "test_examples": len(p.test)}
    summary |= evaluate(p.model, p.test, cfg.train.eval_batch_size, prefix="test/")
    correct = guard_correct(p.model, p.guard, cfg.train.eval_batch_size)
    summary = _with_guard(summary, correct)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    run_report(out, summary)
    return RunResult(out, summary, [], p.model, correct)


def trainable_parameters(model: TransferModel, strategy: Strategy, cfg: RunConfig) -> int:
    """Parameters that any phase of the strategy trains."""
    phases = strategy.phases(model, cfg.train.epochs, cfg.train.lr)
    if phases is None:
        return model.num_parameters()
    ids = {id(p): p.numel() for ph in phases for g in ph.groups for p in g["params"]}
    return int(sum(ids.values()))


@dataclass
class Run:
    """A trained run loaded back from its directory."""

    run_dir: Path
    cfg: RunConfig
    model: TransferModel

    def predict(self, inputs, batch_size: int = 256) -> np.ndarray:
        """For a tensor/array batch, a list of strings, or a Dataset: class probabilities
        (classification), each label's probability (multilabel) or the predicted values (regression).

        Shape:
            returns ``[N, C]`` (``[N, k]`` values).
        """
        ds = inputs if isinstance(inputs, Dataset) else _as_dataset(inputs)
        logits, _ = predict_logits(self.model, ds, batch_size)
        return self.model.task_type.scores(logits).numpy()


def _as_dataset(inputs) -> Dataset:
    if isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], str):
        return TextDataset(list(inputs), np.zeros(len(inputs), dtype=np.int64))
    x = np.asarray(inputs)
    return ArrayDataset(x, np.zeros(len(x), dtype=np.int64))


def load_run(run_dir: str | Path) -> Run:
    """Rebuild a run's model from ``config.yaml`` and load ``model.safetensors``."""
    cfg, model = load_model(run_dir)
    return Run(Path(run_dir), cfg, model)


def evaluate_run(run_dir: str | Path, data: str | None = None) -> dict:
    """Accuracy and loss of a run on ``data`` (a dataset spec), or on its own test split."""
    run = load_run(run_dir)
    if data is None:
        _, _, ds = build_data(run.cfg)
        if ds is None:
            raise TransferkitError(f"Run '{run_dir}' has no test split; pass --data with a dataset to evaluate on.")
    else:
        ds = _load_checked(data, run.cfg, run.model.task_type)
    _check_input_kind(run.model.backbone.input_kind, ds.kind, run.cfg)
    check_labels(ds, run.model.task_type, run.cfg.model.num_classes, f"'{data or run.cfg.data.dataset}'")
    return {"examples": len(ds)} | evaluate(run.model, ds, run.cfg.train.eval_batch_size)


def read_inputs(path: str | Path, cfg: RunConfig | MetaConfig) -> tuple[list[str], Dataset]:
    """Inputs for ``predict``: an .npz (array ``x``), an image file or folder (read with the run's
    ``data.channels`` and ``data.image_size``), or a text file."""
    path = Path(path)
    if not path.exists():
        raise TransferkitError(f"Inputs '{path}' do not exist; check the path.")
    if path.suffix == ".npz":
        data = np.load(path, allow_pickle=False)
        if "x" not in data.files:
            raise TransferkitError(f"'{path}' has no array 'x'; save the inputs as numpy.savez(path, x=...).")
        return [str(i) for i in range(len(data["x"]))], _as_dataset(data["x"])
    if path.suffix in {".txt"}:
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        return [str(i) for i in range(len(lines))], _as_dataset(lines)
    if path.suffix in {".csv", ".jsonl", ".json", ".gz"}:
        texts = [r.get("text", "") for r in _read_text_rows(path)]
        return [str(i) for i in range(len(texts))], _as_dataset(texts)
    files = sorted(p for p in (path.rglob("*") if path.is_dir() else [path]) if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise TransferkitError(f"No images, .npz or text inputs found at '{path}'; give an .npz, a text file or images.")
    return [str(f) for f in files], image_files_dataset(files, cfg)


def image_files_dataset(files: list[Path], cfg: RunConfig | MetaConfig) -> ArrayDataset:
    from PIL import Image, UnidentifiedImageError
    from torchvision import transforms as T

    steps = [T.Grayscale(1) if cfg.data.channels == 1 else T.Lambda(lambda im: im.convert("RGB"))]
    if cfg.data.image_size:
        steps.append(T.Resize((cfg.data.image_size, cfg.data.image_size)))
    tf = T.Compose(steps + [T.ToTensor()])
    xs = []
    for f in files:
        try:
            with Image.open(f) as im:
                xs.append(tf(im))
        except (UnidentifiedImageError, OSError):
            raise TransferkitError(f"'{f}' is not a readable image; replace or remove it.") from None
    return ArrayDataset(torch.stack(xs), np.zeros(len(xs), dtype=np.int64))


def predict(run_dir: str | Path, inputs: str | Path, support: str | Path | None = None) -> list[dict]:
    """One row per input: its id and the prediction of the run's task type. Classification: the
    class (index and name) and its probability; multilabel: the predicted labels (indices and names,
    ``;``-separated; those with probability > 0.5); regression: the value (``;``-separated for several).

    A meta-learning run (``transferkit meta``) first adapts to ``support``, a folder with one
    subfolder of images per class (or an .npz with ``x`` and ``y``), and predicts its classes
    (:func:`transferkit.runs.meta.predict_meta`)."""
    from transferkit.runs.meta import is_meta_run, predict_meta

    if is_meta_run(run_dir):
        if support is None:
            raise TransferkitError(f"'{run_dir}' is a meta-learning run, which predicts the classes of a support set; "
                                   "pass --support with a folder holding one subfolder of images per class.")
        return predict_meta(run_dir, support, inputs)
    if support is not None:
        raise TransferkitError(f"--support applies to meta-learning runs, and '{run_dir}' was written by `train`; "
                               "drop --support.")
    run = load_run(run_dir)
    ids, ds = read_inputs(inputs, run.cfg)
    logits, _ = predict_logits(run.model, ds)
    task = run.model.task_type
    scores, preds = task.scores(logits).numpy(), task.predict(logits).numpy()
    summary = run.run_dir / "summary.json"
    names = json.loads(summary.read_text()).get("class_names") if summary.is_file() else None
    name = (lambda c: names[c] if names else str(c))
    if task.name == "regression":
        return [{"input": i, "prediction": ";".join(f"{v:.4f}" for v in np.atleast_1d(p))} for i, p in zip(ids, preds)]
    if task.name == "multilabel":
        return [{"input": i, "prediction": ";".join(str(c) for c in np.flatnonzero(p)),
                 "class": ";".join(name(int(c)) for c in np.flatnonzero(p))} for i, p in zip(ids, preds)]
    return [{"input": i, "prediction": int(p), "class": name(int(p)), "confidence": round(float(s.max()), 4)}
            for i, p, s in zip(ids, preds, scores)]


def rank(data: str, candidates: str | list[str], metric: str = "logme", shots: int | None = None,
         out: str | Path | None = None, overwrite: bool = False, **options):
    """Rank candidate source models for the target ``data`` by transferability scores, before any
    fine-tuning; see ``transferkit.runs.rank.rank`` for the candidates' forms and the options.

    Example:
        >>> res = rank("mnist_usps:usps", ["runs/mnist-source", "small_cnn=w.safetensors"], shots=20, out="runs/rank")
        >>> [(r["candidate"], r["logme"]) for r in res.rows]
    """
    from transferkit.runs.rank import rank as rank_candidates

    return rank_candidates(data, candidates, metric=metric, shots=shots, out=out, overwrite=overwrite, **options)
