"""``transferkit multitask CONFIG``: build the tasks and the shared model from a config, train it
with every configured weighter and seed, train the single-task baselines when asked, and write
the run directory with its report.

Layout: ``config.yaml``; ``multi/<weighter>/seed-<k>/`` and ``single/<task>/seed-<k>/`` (each with
``metrics.jsonl`` and ``checkpoints/``); ``results.json`` and ``results.csv`` (test metrics per
model); ``summary.json`` (per weighter: mean test metric per task, delta-m %, or why it is undefined
when a single-task baseline scores 0); ``report.html``. Single-task baselines use the multi-task
model's architecture with one task (``single_task_arch``).
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import set_seed

from transferkit.backbones import MLP, create_backbone
from transferkit.config import MultitaskConfig, dump_config, load_config, parse_config
from transferkit.engine import distributed
from transferkit.engine.evaluate import evaluate
from transferkit.engine.trainer import Trainer
from transferkit.errors import TransferkitError
from transferkit.metrics.multitask import ZeroBaselineError, delta_m
from transferkit.model import check_accepts
from transferkit.multitask.data import MultiTaskArrays
from transferkit.multitask.models import CrossStitch, HardSharing, MMoE
from transferkit.multitask.step import MultiTaskStep
from transferkit.multitask.weighters import create_weighter
from transferkit.tasks import TaskType, create_task, labelled

CROSS_STITCH_NEEDS_MLP = ("model.arch 'cross_stitch' copies the network per task and mixes the copies after each "
                          "layer; it works with backbone 'mlp'. Use arch 'hard' or 'mmoe' for other backbones.")


def load_tasks(cfg: MultitaskConfig, progress=None) -> tuple[MultiTaskArrays, MultiTaskArrays, MultiTaskArrays]:
    """(train, validation, test) multi-task arrays for the configured data."""
    from transferkit.multitask.datasets import load_domain_tasks, load_multi_mnist

    d = cfg.data
    train, test = load_multi_mnist(d) if d.kind == "multimnist" else load_domain_tasks(d, progress)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(d.seed))
    n_val = int(round(d.val_fraction * len(train)))
    return train.subset(order[n_val:]), train.subset(order[:n_val]), test


def task_types(cfg: MultitaskConfig, names) -> dict[str, TaskType]:
    """Each task's declared type: ``model.tasks[name]``, else ``model.task``."""
    m = cfg.model
    return {t: create_task(m.tasks[t].task, **m.tasks[t].task_args) if t in m.tasks else create_task(m.task, **m.task_args)
            for t in names}


def outputs(ds: MultiTaskArrays, tasks: dict[str, TaskType]) -> dict[str, int]:
    """Each task's head width from its labelled targets (checked against its declared type):
    classes, multi-hot width, or values per row."""
    out = {}
    for t, y in ds.targets.items():
        y = y[labelled(y)]
        tasks[t].check_targets(y, None, f"Task '{t}' of the multi-task data")
        out[t] = tasks[t].outputs(y)
    return out


def single_task_arch(arch: str) -> str:
    """The architecture of a single-task baseline: the multi-task model's own (an MMoE baseline is an
    MMoE with one gate), except cross-stitch, which mixes several tasks' networks and for one task is
    the plain network (hard sharing with one head)."""
    return "hard" if arch == "cross_stitch" else arch


def stitch_blocks(backbone) -> list[torch.nn.Module]:
    """An MLP's layers as cross-stitch blocks (flatten + first layer, then one block per layer)."""
    if not isinstance(backbone, MLP):
        raise TransferkitError(CROSS_STITCH_NEEDS_MLP)
    layers = list(backbone.blocks)
    blocks, current = [], [layers[0]]  # the Flatten goes with the first Linear
    for layer in layers[1:]:
        if isinstance(layer, torch.nn.Linear) and any(isinstance(m, torch.nn.Linear) for m in current):
            blocks.append(torch.nn.Sequential(*current))
            current = []
        current.append(layer)
    return blocks + [torch.nn.Sequential(*current)]


def build_model(cfg: MultitaskConfig, data: MultiTaskArrays, arch: str | None = None):
    m = cfg.model
    arch = arch or m.arch
    tasks = task_types(cfg, list(data.targets))
    outs, example = outputs(data, tasks), data.x[:2]
    backbone = create_backbone(m.backbone, weights=m.weights, **m.backbone_args)
    if arch == "hard":
        model = HardSharing(backbone, outs, tasks=tasks)
    elif arch == "mmoe":
        model = MMoE(backbone, outs, **m.arch_args, tasks=tasks)
    else:
        model = CrossStitch(stitch_blocks(backbone), backbone.num_features, outs, **m.arch_args, tasks=tasks)
    return check_accepts(model, example, m.backbone, "the tasks' inputs", "adjust model.backbone_args (e.g. in_features)")


def train_one(cfg: MultitaskConfig, data: tuple, weighter: str, args: dict, seed: int, run_dir: Path,
              arch: str | None = None, progress: bool | None = None) -> dict:
    """Train one model (all of ``data``'s tasks) with ``weighter``; returns its test metrics and history."""
    train, val, test = data
    set_seed(seed)
    model = build_model(cfg, train, arch)
    types = {t: kind.name for t, kind in model.tasks.items()}  # the declared types: uncertainty weighting's form
    model.weighter = create_weighter(weighter, list(train.targets), types, **args)  # trains and is checkpointed with the model
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    history = Trainer(cfg.train.model_copy(update={"seed": seed}), run_dir, progress).fit(
        model, MultiTaskStep(cfg.similarity_every), train, val if len(val) else None)
    return {"history": history, "test": evaluate(model, test, cfg.train.eval_batch_size),
            "seconds": round(time.perf_counter() - t0, 2)}


def _check(cfg: MultitaskConfig, weighters: list[str]) -> None:
    for name in weighters:  # unknown names and bad arguments fail before any data is read
        weighter = create_weighter(name, ["a", "b"], **_args(cfg, name))
        if cfg.data.batches == "alternating" and getattr(weighter, "needs_every_task", False):
            raise TransferkitError(f"Weighter '{name}' needs every task's loss in each step, but data.batches is "
                                   "'alternating' (one task per batch); set data.batches to 'mixed'.")
    if cfg.model.arch == "cross_stitch" and cfg.model.backbone != "mlp":
        raise TransferkitError(CROSS_STITCH_NEEDS_MLP)
    if cfg.train.mixed_precision == "fp16" or cfg.train.grad_accum > 1:
        raise TransferkitError("Multi-task training runs without fp16 loss scaling or gradient accumulation; "
                               "set train.mixed_precision to 'no' or 'bf16' and train.grad_accum to 1.")


def _args(cfg: MultitaskConfig, name: str) -> dict:
    return cfg.weighter.args if name == cfg.weighter.name else cfg.weighter_args.get(name, {})


def summarise(results: list[dict], tasks: list[str]) -> dict:
    """Per weighter: mean and std over seeds of each task's test metric; with single-task results,
    delta-m % of the seed-mean metrics (and its spread over seeds) against the single-task means."""
    def metric(test: dict, t: str) -> tuple[str, float]:  # accuracy, mAP (multi-label) or mean squared error
        key = next(k for k in (f"{t}/accuracy", f"{t}/mAP", f"{t}/mse") if k in test)
        return key, test[key]

    single, single_std, single_seconds = {}, {}, []
    for t in tasks:
        runs = [r for r in results if r["kind"] == "single" and r["name"] == t]
        if runs:
            vals = [metric(r["test"], t)[1] for r in runs]
            single[t], single_std[t] = float(np.mean(vals)), float(np.std(vals))
            single_seconds.append(float(np.mean([r["seconds"] for r in runs])))
    summary = {}
    for name in dict.fromkeys(r["name"] for r in results if r["kind"] == "multi"):
        runs = [r for r in results if r["kind"] == "multi" and r["name"] == name]
        per_task = {t: [metric(r["test"], t)[1] for r in runs] for t in tasks}
        higher = {t: not metric(runs[0]["test"], t)[0].endswith("mse") for t in tasks}
        entry = {"tasks": {t: {"mean": float(np.mean(v)), "std": float(np.std(v))} for t, v in per_task.items()},
                 "seeds": len(runs), "seconds": float(np.mean([r["seconds"] for r in runs]))}
        if len(single) == len(tasks):
            try:
                entry["delta_m"] = delta_m({t: entry["tasks"][t]["mean"] for t in tasks}, single, higher)
                seeds = [delta_m({t: per_task[t][k] for t in tasks}, single, higher) for k in range(len(runs))]
                entry["delta_m_std"] = float(np.std(seeds))
            except ZeroBaselineError as e:  # a relative change against 0 is undefined: no delta-m, and why
                entry["delta_m_undefined"] = str(e)
        summary[name] = entry
    if single:  # seconds: all the single-task models of one seed together
        summary["single_task"] = {"tasks": {t: {"mean": v, "std": single_std[t]} for t, v in single.items()},
                                  "seeds": max(sum(r["kind"] == "single" and r["name"] == t for r in results) for t in single),
                                  "seconds": float(np.sum(single_seconds))}
    return summary


def run_multitask(config: MultitaskConfig | dict | str | Path, out: str | Path, overwrite: bool = False,
                  progress: bool | None = None, overrides: list[str] | None = None, on_model=None,
                  resume: bool = False, executor: str = "serial", workers: int | None = None,
                  address: str | None = None) -> dict:
    """Train the configured weighter (and those under ``compare``) over ``seeds`` seeds, and the
    single-task baselines; write the run directory and report. Returns the summary.

    Each model is one job of ``executor`` (``runs.executors``: ``serial`` in this process, or ``ray``, one
    Ray task per model); ``resume`` keeps the models that finished (``result.json``) and trains the others.

    Example:
        >>> summary = run_multitask("examples/multitask/office_caltech.yaml", out="runs/office_mtl")
        >>> summary["pcgrad"]["delta_m"]
    """
    from transferkit.api import check_run_dir, open_run_dir
    from transferkit.report.multitask import multitask_report
    from transferkit.runs.executors import create_executor

    cfg = config if isinstance(config, MultitaskConfig) else (
        parse_config(dict(config), "config", overrides, schema=MultitaskConfig) if isinstance(config, dict)
        else load_config(config, overrides, schema=MultitaskConfig))
    weighters = list(dict.fromkeys([cfg.weighter.name, *cfg.compare]))
    _check(cfg, weighters)
    runner = create_executor(executor, workers, address)
    out = Path(out)
    check_run_dir(out, overwrite, resume)  # before reading (or encoding) any data
    if resume and (out / "config.yaml").read_text(encoding="utf-8") != dump_config(cfg):
        raise TransferkitError(f"Cannot resume '{out}' with a different config; use its config.yaml or start a new "
                               "run.")
    data = load_tasks(cfg, progress=on_model and (lambda msg: on_model({"message": msg})))
    unknown = sorted(set(cfg.model.tasks) - set(data[0].targets))
    if unknown:
        raise TransferkitError(f"model.tasks names '{unknown[0]}', which is not one of the data's tasks "
                               f"({', '.join(data[0].targets)}); use those names.")
    build_model(cfg, data[0])  # the targets suit the task types, the backbone accepts the inputs: before the run directory
    main = open_run_dir(out, overwrite, resume, cfg.train.device, dump_config(cfg))  # under several processes, process 0 writes
    tasks = list(data[0].targets)
    models = [("multi", w, seed) for w in weighters for seed in range(cfg.seeds)]
    if cfg.single_task:
        models += [("single", t, seed) for t in tasks for seed in range(cfg.seeds)]
    root = out.absolute()  # the jobs may run in other processes
    jobs = [Job(kind, name, seed, cfg, data, str(root / kind / name / f"seed-{seed}"), progress, resume)
            for kind, name, seed in models]

    def done(i: int, res: dict) -> None:
        if on_model:
            on_model({"kind": jobs[i].kind, "name": jobs[i].name, "seed": jobs[i].seed, "test": res["test"],
                      "seconds": res["seconds"]})

    results = [{"kind": j.kind, "name": j.name, "seed": j.seed, "test": r["test"], "seconds": r["seconds"],
                "history": r["history"]} for j, r in zip(jobs, runner.map(train_job, jobs, done))]
    summary = summarise(results, tasks)
    if not main:
        distributed.barrier()
        return summary
    (out / "results.json").write_text(json.dumps([{k: v for k, v in r.items() if k != "history"} for r in results],
                                                 indent=1))
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as f:
        keys = sorted({k for r in results for k in r["test"]})
        w = csv.writer(f)
        w.writerow(["kind", "name", "seed", "seconds", *keys])
        w.writerows([[r["kind"], r["name"], r["seed"], r["seconds"], *[r["test"].get(k, "") for k in keys]]
                     for r in results])
    multitask_report(out, results, summary, tasks, cfg.name or out.name)
    distributed.barrier()
    return summary


@dataclass
class Job:
    """One model of a multi-task run: a weighter's (``multi``) or a single task's (``single``), at one seed."""

    kind: str
    name: str  # the weighter, or the task
    seed: int
    cfg: MultitaskConfig
    data: tuple  # (train, val, test), loaded once by the driver; a Ray task receives a copy
    run_dir: str  # absolute: the job may run in another process
    progress: bool | None = None
    resume: bool = False


def train_job(job: Job) -> dict:
    """Train one model into its directory and record its test metrics, time and history in ``result.json``;
    with ``resume`` a model that has that file is read back, and any other trained afresh."""
    run_dir, cfg = Path(job.run_dir), job.cfg
    done, main = run_dir / "result.json", distributed.is_main_process()  # under several processes, process 0 writes
    if job.resume and done.is_file():
        return json.loads(done.read_text())
    if main:
        if run_dir.exists():  # cut short before: started again
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
    distributed.barrier()
    if job.kind == "multi":
        res = train_one(cfg, job.data, job.name, _args(cfg, job.name), cfg.train.seed + job.seed, run_dir,
                        progress=job.progress)
    else:
        only = tuple(d.only(job.name) for d in job.data)
        res = train_one(cfg, only, "equal", {}, cfg.train.seed + job.seed, run_dir,
                        arch=single_task_arch(cfg.model.arch), progress=job.progress)
    if main:
        done.write_text(json.dumps(res, indent=1))
    return res
