"""``transferkit continual CONFIG``: build the stream, the model and the strategies from a config,
learn the stream (resumable), and write the run directory with its report.

Layout: ``config.yaml``, ``metrics.jsonl`` (one record per task), ``checkpoints/task-XXXX``,
``results.json``, ``report.html`` (+ PNGs); strategies listed under ``compare`` run on the same
stream in ``compare/<name>/`` with the same files, and the report compares them all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate.utils import set_seed

from transferkit.backbones import create_backbone
from transferkit.config import ContinualConfig, dump_config, load_config, parse_config
from transferkit.continual import create_continual_strategy
from transferkit.data.datasets import ArrayDataset
from transferkit.data.registry import DATASETS, load_dataset
from transferkit.data.splits import stratified_split
from transferkit.data.streams import Stream, permuted, rotated, sequence, split_classes
from transferkit.engine import distributed
from transferkit.errors import TransferkitError
from transferkit.heads import create_head
from transferkit.model import TransferModel, check_accepts
from transferkit.report.continual import continual_report
from transferkit.runs.learner import ContinualResult, check_stream, train_stream
from transferkit.tasks import create_task


def _pair(spec: str, cfg, task: str = "classification") -> tuple[ArrayDataset, ArrayDataset]:
    """(train, test) of a dataset: its train/test domains, or a test split (stratified by class)."""
    name = spec.partition(":")[0]
    if ":" not in spec and name in DATASETS and {"train", "test"} <= set(DATASETS.get(name).domains):
        return (load_dataset(f"{name}:train", cfg.data_dir, cfg.image_size, task=task),
                load_dataset(f"{name}:test", cfg.data_dir, cfg.image_size, task=task))
    ds = load_dataset(spec, cfg.data_dir, cfg.image_size, task=task)
    if not isinstance(ds, ArrayDataset):
        raise TransferkitError(f"Continual streams need in-memory arrays; '{spec}' is a {type(ds).__name__}. "
                               "Convert it to an .npz file.")
    keep, take = stratified_split(ds.targets, cfg.test_fraction, cfg.seed)
    part = lambda idx, suffix: ArrayDataset(ds.x[torch.as_tensor(idx)], ds.targets[idx], name=f"{spec}{suffix}",
                                            class_names=ds.class_names, task=task)
    return part(keep, ""), part(take, ":test")


def build_stream(cfg, task: str = "classification") -> Stream:
    """The stream a ``StreamConfig`` describes, with targets of task type ``task`` (model.task)."""
    if cfg.kind == "sequence":
        if len(cfg.datasets) < 2:
            raise TransferkitError("stream.kind 'sequence' needs stream.datasets with two or more 'name:domain' entries.")
        return sequence([(d, *_pair(d, cfg, task)) for d in cfg.datasets], name="sequence", task=task)
    train, test = _pair(cfg.dataset, cfg, task)
    if cfg.kind == "split_classes":
        return split_classes(train, test, cfg.classes_per_task, cfg.order, cfg.scenario or "class", cfg.multi_head,
                             name=f"split_{cfg.dataset}")
    if cfg.scenario not in (None, "domain"):
        raise TransferkitError(f"stream.kind '{cfg.kind}' keeps the labels of every task: it is domain-incremental; "
                               "remove stream.scenario or set it to 'domain'.")
    maker = permuted if cfg.kind == "permuted" else rotated
    kw = {"max_degrees": cfg.max_degrees} if cfg.kind == "rotated" else {}
    return maker(train, test, cfg.tasks, cfg.seed, name=f"{cfg.kind}_{cfg.dataset}", task=task, **kw)


def build_model(cfg: ContinualConfig, stream: Stream) -> TransferModel:
    set_seed(cfg.train.seed)
    m = cfg.model
    backbone = create_backbone(m.backbone, weights=m.weights, **m.backbone_args)
    model = TransferModel(backbone, create_head(m.head, backbone.num_features, stream.num_classes, **m.head_args),
                          create_task(m.task, **m.task_args))
    x, _ = stream.experiences[0].train[[0]]
    return check_accepts(model, x, m.backbone, "the stream's inputs",
                         "adjust model.backbone_args (e.g. in_features) or stream.image_size")


def variants(cfg: ContinualConfig) -> list[tuple[str, ContinualConfig]]:
    """(label, config) for the main strategy and each compared one."""
    out = [(cfg.strategy.name, cfg)]
    for name in cfg.compare.strategies:
        v = cfg.compare.variants.get(name)
        strategy = {"name": (v.strategy if v and v.strategy else name), "args": v.args if v else {}}
        raw = cfg.model_dump(mode="json") | {"strategy": strategy, "compare": {}}
        if v:
            raw["train"] = raw["train"] | v.train
            raw["model"] = raw["model"] | v.model
        out.append((name, parse_config(raw, f"compare.{name}", schema=ContinualConfig)))
    return out


def run_continual(config: ContinualConfig | dict | str | Path, out: str | Path, overwrite: bool = False,
                  resume: bool = False, progress: bool | None = None, overrides: list[str] | None = None,
                  on_task=None, executor: str = "serial", workers: int | None = None, address: str | None = None,
                  on_variant=None) -> dict[str, ContinualResult]:
    """Learn the configured stream with the configured strategy (and those under ``compare``).

    Each strategy is one job of ``executor`` (``runs.executors``: ``serial`` in this process, or ``ray``,
    one Ray task per strategy); ``on_task`` (per task) is called in serial runs, ``on_variant(label,
    result)`` as each strategy finishes. With ``resume``, a strategy that finished is read back and the
    others go on from their last checkpoint.

    Example:
        >>> results = run_continual("examples/continual/split_mnist.yaml", out="runs/split_mnist")
        >>> results["er"].summary()["class_il"]["average_accuracy"]
    """
    from transferkit.api import open_run_dir
    from transferkit.runs.executors import Serial, create_executor

    cfg = config if isinstance(config, ContinualConfig) else (
        parse_config(dict(config), "config", overrides, schema=ContinualConfig) if isinstance(config, dict)
        else load_config(config, overrides, schema=ContinualConfig))
    runs = variants(cfg)
    # unknown strategy names and bad arguments fail before any data is read
    strategies = [create_continual_strategy(c.strategy.name, **c.strategy.args) for _, c in runs]
    runner = create_executor(executor, workers, address)
    out = Path(out).absolute()  # the jobs may run in other processes
    stream = build_stream(cfg.stream, cfg.model.task)
    for s in strategies:  # a strategy that cannot learn this stream fails before the run directory is touched
        check_stream(s, stream)
    main = open_run_dir(out, overwrite, resume, cfg.train.device, dump_config(cfg))  # under several processes, process 0 writes
    serial = isinstance(runner, Serial)  # a callback of this process cannot follow a job into another one
    jobs = [Job(label, c.model_dump(mode="json"), str(out if i == 0 else out / "compare" / label), stream, resume,
                progress if serial else False, on_task if serial else None)
            for i, (label, c) in enumerate(runs)]
    done = (lambda i, res: on_variant(jobs[i].label, res)) if on_variant else (lambda i, res: None)
    results = dict(zip([j.label for j in jobs], runner.map(learn, jobs, done)))
    if main:
        continual_report(out, cfg.name or out.name, list(results))
    distributed.barrier()
    return results


@dataclass
class Job:
    """One strategy of a continual comparison: its config and run directory."""

    label: str
    config: dict  # a ContinualConfig
    run_dir: str
    stream: Stream  # built once by the driver; a Ray task receives a copy
    resume: bool = False
    progress: bool | None = None
    on_task: Callable | None = None


def learn(job: Job) -> ContinualResult:
    """Learn the stream with one strategy into its run directory (``results.json`` at the end); with
    ``resume``, a finished one is read back and an unfinished one goes on from its last checkpoint."""
    run_dir, main = Path(job.run_dir), distributed.is_main_process()  # under several processes, process 0 writes
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    done = run_dir / "results.json"
    if job.resume and done.is_file():
        return ContinualResult(**{k: v for k, v in json.loads(done.read_text()).items() if k != "summary"})
    c = parse_config(job.config, f"compare.{job.label}", schema=ContinualConfig)
    strategy = create_continual_strategy(c.strategy.name, **c.strategy.args)
    again = job.resume and (run_dir / "checkpoints" / "LATEST").is_file()
    res = train_stream(build_model(c, job.stream), strategy, job.stream, c.train, run_dir=run_dir, resume=again,
                       progress=job.progress, deterministic=c.deterministic, on_task=job.on_task)
    res.strategy = job.label
    if main:
        done.write_text(json.dumps(res.to_dict(), indent=1))
    return res
