"""``transferkit`` command line: train, eval, predict, list, demo, rank ... Mirrors ``transferkit.api``."""

from __future__ import annotations

import csv
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from transferkit.errors import TransferkitError
from transferkit.tables import WIDTH, fitted_tables

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Knowledge transfer between neural-network tasks.")
console = Console()
err_console = Console(stderr=True)
STATE = {"debug": False}


class Family(str, Enum):
    backbones = "backbones"
    strategies = "strategies"
    datasets = "datasets"
    heads = "heads"
    continual = "continual"
    weighters = "weighters"
    tasks = "tasks"


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False) -> None:
    STATE["debug"] = debug


# Where the jobs of a grid (compare's runs, continual's strategies, multitask's models) go
ExecutorOption = Annotated[str, typer.Option(
    help="Where the grid's jobs go: serial (one after another, here) or ray (one Ray task each).")]
WorkersOption = Annotated[Optional[int], typer.Option(
    help="With --executor ray: the CPUs of the local Ray, one job each (default: this machine's CPUs).")]
AddressOption = Annotated[Optional[str], typer.Option(
    help="With --executor ray: the address of a running Ray cluster (e.g. auto, or HOST:6379).")]
PROCESSES_HELP = ("Train in this many local processes (PyTorch DDP; train.batch_size is the global batch). "
                  "Across machines, start the command with torchrun instead.")


def launch(command: str, processes: int, config: Path, set_: list[str] | None, out: Path, overwrite: bool,
           resume: bool, flags: list[str] = ()) -> None:
    """Run ``transferkit COMMAND`` in ``processes`` local processes (torchrun's launcher), all writing
    to the one directory ``out`` (refused here when it may not be written), and exit with their status."""
    from transferkit.api import check_run_dir
    from transferkit.engine.distributed import launch_local, world_size

    if world_size() > 1:
        raise TransferkitError("--processes starts the processes itself; under torchrun or accelerate launch, leave it out.")
    check_run_dir(out, overwrite, resume)
    argv = [command, str(config), *[a for kv in (set_ or []) for a in ("--set", kv)], "--out", str(out),
            *(["--overwrite"] if overwrite else []), *(["--resume"] if resume else []), *flags]
    raise typer.Exit(launch_local(processes, argv))


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="YAML config file.")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a config key: train.epochs=5.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default runs/<name>).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run directory.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    guard: Annotated[bool, typer.Option(
        help="Also train the from-scratch (and source-only) baselines; warn if the transfer is not better on validation.")
    ] = False,
    processes: Annotated[int, typer.Option(min=1, help=PROCESSES_HELP)] = 1,
) -> None:
    """Train one run from a config and write its run directory."""
    from transferkit.api import train as api_train

    if processes > 1:
        from transferkit.api import default_run_dir
        from transferkit.config import load_config
        from transferkit.engine.distributed import check_run

        cfg = load_config(config, set_ or [])
        check_run(cfg.strategy.name, guard)  # refused here, in one sentence, rather than in every process
        launch("train", processes, config, set_, out or default_run_dir(cfg.name), overwrite, resume,
               ["--guard"] if guard else [])

    res = api_train(config, out=out, overwrite=overwrite, resume=resume, overrides=set_ or [], guard=guard)
    from transferkit.engine.distributed import is_main_process

    if not is_main_process():  # under several processes the first one reports
        return
    shown = {k: v for k, v in res.metrics.items() if k.startswith("test/") or k in ("train_seconds", "epochs_run")}
    if "auto" in res.metrics:
        console.print(f"Strategy auto chose '{res.metrics['auto']['strategy']}': {res.metrics['auto']['reason']}",
                      highlight=False)
    console.print(f"Run written to {res.run_dir}")
    console.print(json.dumps(shown, indent=1))
    if "guard" in res.metrics:
        g = res.metrics["guard"]
        if g.get("note"):
            console.print(g["note"], highlight=False)
        if g["warning"]:
            console.print(f"[yellow]Warning:[/] {g['warning']}", highlight=False)
        elif "baseline" in g:
            console.print(f"Negative-transfer guard: better than {g['baseline'].replace('_', ' ')} beyond noise on "
                          f"{g['rows']} validation rows ({100 * g['difference']:+.1f} ± {100 * g['se']:.1f} points).",
                          highlight=False)
    if "domain_distance" in res.metrics:
        d, sel = res.metrics["domain_distance"], res.metrics["selection"]
        console.print(f"Domain distance, before -> after: MMD {d['mmd_before']:.3f} -> {d['mmd_after']:.3f}, "
                      f"proxy-A {d['pad_before']:.2f} -> {d['pad_after']:.2f}")
        console.print(f"Weights of epoch {sel['epoch']}" + (f", chosen by {sel['monitor']}" if sel["monitor"] else ""))


@app.command("eval")
def eval_(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `train` or `meta`.")],
    data: Annotated[Optional[str], typer.Option(help="Dataset spec or path (default: the run's test split).")] = None,
) -> None:
    """Evaluate a trained run on its test split or on other data."""
    from transferkit.api import evaluate_run

    console.print(json.dumps(evaluate_run(run_dir, data), indent=1))


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `train` or `meta`.")],
    inputs: Annotated[Path, typer.Argument(help=".npz with x, an image file/folder, or a .txt/.csv/.jsonl of texts.")],
    out: Annotated[Optional[Path], typer.Option(help="Write the predictions as CSV here (default: stdout).")] = None,
    support: Annotated[Optional[Path], typer.Option(
        help="Meta-learning runs: the support set to adapt to, a folder with one subfolder of images per class "
             "(or an .npz with x and y).")] = None,
) -> None:
    """Predict classes, label sets or values (the run's task type) for new inputs with a trained run;
    a meta-learning run first adapts to the classes of --support."""
    from transferkit.api import predict as api_predict

    rows = api_predict(run_dir, inputs, support)
    fh = open(out, "w", newline="", encoding="utf-8") if out else sys.stdout
    writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["input", "prediction"])
    writer.writeheader()
    writer.writerows(rows)
    if out:
        fh.close()
        console.print(f"{len(rows)} predictions written to {out}")


def list_tables(family: str, width: int = WIDTH) -> list[Table]:
    """The table of ``transferkit list FAMILY``: each entry's name and the first sentence of its description."""
    from transferkit.backbones import BACKBONES
    from transferkit.continual import CONTINUAL
    from transferkit.data import DATASETS
    from transferkit.finetune import STRATEGIES
    from transferkit.heads import HEADS
    from transferkit.multitask import WEIGHTERS
    from transferkit.tasks import TASKS

    registry = {"backbones": BACKBONES, "strategies": STRATEGIES, "datasets": DATASETS, "heads": HEADS,
                "continual": CONTINUAL, "weighters": WEIGHTERS, "tasks": TASKS}[family]
    rows = []
    for name in registry.names():
        desc = registry.describe(name)
        if family == "datasets":
            desc += f" (domains: {', '.join(registry.get(name).domains)})"
        rows.append([name, desc])
    return fitted_tables(family, ["name", "description"], rows, keep=2, width=width)


@app.command("list")
def list_(family: Annotated[Family, typer.Argument(help="What to list.")]) -> None:
    """List the registered backbones, strategies, heads, datasets, continual methods, weighters or task types."""
    for table in list_tables(family.value, console.width):
        console.print(table)


def continual_tables(rows: list[dict], title: str, width: int = WIDTH) -> list[Table]:
    """The terminal table of ``transferkit continual``: one row per strategy and setting."""
    from transferkit.report.continual import METRIC_LABELS, fwt_cell

    keys = ("average_accuracy", "forgetting", "bwt")
    metrics = {METRIC_LABELS.get(r.get("metric", "accuracy"), "score") for r in rows}
    avg = "avg acc." if metrics <= {"accuracy"} else f"avg {metrics.pop()}" if len(metrics) == 1 else "avg score"
    return fitted_tables(f"{title} (%, except seconds)", ["strategy", "setting", avg, "forgetting", "BWT",
                                                          "FWT", "seconds"],
                         [[r["strategy"], r["setting"], *(r.get(k, "") for k in keys), fwt_cell(r), r.get("seconds", "")]
                          for r in rows], keep=2, width=width)


def multitask_tables(headers: list[str], rows: list[list], title: str, width: int = WIDTH) -> list[Table]:
    """The terminal table of ``transferkit multitask`` from ``delta_m_rows`` (units go to the title)."""
    short = {"seconds per seed": "s/seed"}
    headers = [short.get(h, h.removesuffix(" %")) for h in headers]
    return fitted_tables(f"{title} (test %, mean ± std over seeds)", headers, rows, width=width)


@app.command()
def continual(
    config: Annotated[Path, typer.Argument(help="YAML config with stream, model, strategy, train (and compare).")],
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default runs/<name>).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a config key: strategy.name=er.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run directory.")] = False,
    resume: Annotated[bool, typer.Option(help="Go on after the last finished task of the run in --out.")] = False,
    executor: ExecutorOption = "serial",
    workers: WorkersOption = None,
    address: AddressOption = None,
    processes: Annotated[int, typer.Option(min=1, help=PROCESSES_HELP)] = 1,
) -> None:
    """Learn a stream of tasks (continual learning); checkpoint after every task; write the report."""
    from transferkit.config import ContinualConfig, load_config
    from transferkit.engine.distributed import check_run, is_main_process
    from transferkit.report.continual import comparison_rows, footnotes
    from transferkit.runs.continual import run_continual, variants

    cfg = load_config(config, set_ or [], schema=ContinualConfig)
    out = out or Path("runs") / (cfg.name or config.stem)
    if processes > 1:
        if executor != "serial":
            raise TransferkitError("--processes trains each strategy in several processes here, so it does not combine "
                                   "with --executor ray; choose one of them.")
        for _, variant in variants(cfg):  # refused here, in one sentence, rather than in every process
            check_run(variant.strategy.name, False)
        launch("continual", processes, config, set_, out, overwrite, resume)
    main = is_main_process()  # under several processes, the first one reports
    results = run_continual(cfg, out, overwrite=overwrite, resume=resume, executor=executor, workers=workers,
                            address=address,
                            on_task=lambda r: main and console.print(
                                f"task {r['task']} ({r['name']}): {r['seconds']:.1f} s, mean {r['metric']} on tasks seen "
                                + ", ".join(f"{k.split('/')[1]} {100 * v:.1f}%" for k, v in r.items()
                                            if k.startswith("seen_accuracy/"))),
                            on_variant=None if executor == "serial" else lambda label, res: console.print(
                                f"{label}: learned the stream's {len(res.tasks)} tasks", highlight=False))
    if not main:
        return
    title = f"continual: {cfg.name or config.stem}"
    rows = comparison_rows({label: res.to_dict() for label, res in results.items()})
    for table in continual_tables(rows, title, console.width):
        console.print(table)
    for note in footnotes(rows):
        console.print(note)
    console.print(f"Run written to {out} (report: {out / 'report.html'})")


@app.command()
def multitask(
    config: Annotated[Path, typer.Argument(help="YAML config with data, model, weighter, compare, train.")],
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default runs/<name>).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a config key: weighter.name=pcgrad.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run directory.")] = False,
    resume: Annotated[bool, typer.Option(
        help="Go on with the run in --out: keep the models that finished, train the others.")] = False,
    executor: ExecutorOption = "serial",
    workers: WorkersOption = None,
    address: AddressOption = None,
    processes: Annotated[int, typer.Option(min=1, help=PROCESSES_HELP)] = 1,
) -> None:
    """Train one shared model on several tasks with each weighter (and the single-task baselines); write the report."""
    from transferkit.config import MultitaskConfig, load_config
    from transferkit.engine.distributed import is_main_process
    from transferkit.multitask.step import PROCESS_WEIGHTERS
    from transferkit.runs.multitask import run_multitask
    from transferkit.report.multitask import delta_m_rows

    cfg = load_config(config, set_ or [], schema=MultitaskConfig)
    out = out or Path("runs") / (cfg.name or config.stem)
    if processes > 1:
        if executor != "serial":
            raise TransferkitError("--processes trains each model in several processes here, so it does not combine "
                                   "with --executor ray; choose one of them.")
        unchecked = [w for w in dict.fromkeys([cfg.weighter.name, *cfg.compare]) if w not in PROCESS_WEIGHTERS]
        if unchecked:  # refused here, not in every process
            raise TransferkitError(f"Weighter '{unchecked[0]}' is not checked under several processes; use one of "
                                   f"{', '.join(PROCESS_WEIGHTERS)}, or train in one process (without --processes).")
        launch("multitask", processes, config, set_, out, overwrite, resume)
    main = is_main_process()  # under several processes, the first one reports

    def shown(r: dict) -> None:
        if not main:
            return
        if "message" in r:
            console.print(r["message"])
            return
        accs = ", ".join(f"{k.split('/')[0]} {100 * v:.1f}%" for k, v in r["test"].items() if k.endswith("/accuracy"))
        console.print(f"{r['kind']} {r['name']} seed {r['seed']}: {r['seconds']:.1f} s, test {accs}")

    summary = run_multitask(cfg, out, overwrite=overwrite, on_model=shown, resume=resume, executor=executor,
                            workers=workers, address=address)
    if not main:
        return
    tasks = list(next(iter(summary.values()))["tasks"])
    headers, rows = delta_m_rows(summary, tasks)
    for table in multitask_tables(headers, rows, f"multitask: {cfg.name or config.stem}", console.width):
        console.print(table)
    console.print(f"Run written to {out} (report: {out / 'report.html'})")


@app.command()
def meta(
    config: Annotated[Path, typer.Argument(help="YAML config with data, model, method, train.")],
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default runs/<name>).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a config key: method.name=fomaml.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run directory.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    processes: Annotated[int, typer.Option(min=1, help=PROCESSES_HELP.replace("train.batch_size is the global batch",
                                                                              "each takes a share of the meta-batch"))] = 1,
) -> None:
    """Meta-learn from N-way K-shot episodes (MAML, FOMAML, ANIL, Reptile, ProtoNets or the fine-tuning baseline)."""
    from transferkit.config import MetaConfig, load_config
    from transferkit.runs.meta import check_processes, run_meta

    cfg = load_config(config, set_ or [], schema=MetaConfig)
    out = out or Path("runs") / (cfg.name or config.stem)
    if processes > 1:
        check_processes(cfg, processes)  # refused here, in one sentence, rather than in every process
        launch("meta", processes, config, set_, out, overwrite, resume)
    res = run_meta(cfg, out, overwrite=overwrite, resume=resume, on_eval=lambda r: console.print(
        f"iteration {r['iteration']}: meta-train loss {r['train/loss']:.3f}, meta-validation accuracy "
        f"{100 * r['val/accuracy']:.1f} ± {100 * r['val/ci95']:.1f}%", highlight=False))
    if not res:  # under several processes, the first one reports
        return
    for t in res.get("tests", [res["test"]]):
        console.print(f"{res['method']} {t['n_way']}-way {t['k_shot']}-shot: test accuracy {100 * t['accuracy']:.2f} ± "
                      f"{100 * t['ci95']:.2f}% over {t['episodes']} episodes ({res['train_seconds']:.0f} s "
                      "meta-training)", highlight=False)
    console.print(f"Run written to {out} (report: {out / 'report.html'})")


@app.command()
def federated(
    config: Annotated[Path, typer.Argument(help="YAML config with data, model, strategy, train and federated.")],
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default runs/<name>).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a config key: federated.alpha=0.1.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run directory.")] = False,
) -> None:
    """Federated transfer learning with Flower: label-skewed clients train only the strategy's tensors (FedAvg, FedProx, DP)."""
    from transferkit.federated.run import require_flower, run_federated

    require_flower()  # before anything is read: the command cannot run without it
    res = run_federated(config, out=out, overwrite=overwrite, overrides=set_ or [],
                        on_round=lambda r: r["round"] and console.print(
                            f"round {r['round']}: global test accuracy {100 * r['test/accuracy']:.2f}%", highlight=False))
    s = res.summary
    console.print(f"federated {100 * s['test/accuracy']:.2f}%, centralised {100 * s['centralised/accuracy']:.2f}%, "
                  f"local-only mean {100 * s['local_only/mean_accuracy']:.2f}%; each client sent {s['exchanged_bytes']:,} "
                  f"bytes per round ({100 * s['bytes_fraction']:.2f}% of the model's {s['model_bytes']:,})", highlight=False)
    if s["dp"]:
        dp = s["dp"]
        console.print(f"privacy of the global models: client-level ({dp['epsilon']:.2f}, {dp['delta']:g})-DP after "
                      f"{dp['rounds']} rounds, a client's update zeroed out ({dp['epsilon_replace_one']:.2f} for one "
                      f"replaced; epsilon {dp['epsilon_is']})", highlight=False)
    console.print(f"Run written to {res.run_dir} (report: {res.run_dir / 'report.md'})")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where the demo's runs and report go.")] = Path("runs/demo"),
    shots: Annotated[str, typer.Option(help="Labelled USPS images per class, comma-separated.")] = "1,3,10",
    seeds: Annotated[int, typer.Option(help="Seeds per strategy.")] = 3,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing demo directory.")] = False,
    strategies: Annotated[str, typer.Option(help="Comma-separated few-shot strategies to compare.")] =
        "scratch,feature_extraction,full",
    adapt: Annotated[str, typer.Option(help="Comma-separated domain-adaptation strategies at 0 labels ('' for none).")] =
        "mcc,dann",
) -> None:
    """MNIST -> USPS: source-only vs domain adaptation at 0 labels, then scratch vs transfer at 1, 3, 10."""
    from transferkit.compare import parse_shots
    from transferkit.demo import DemoSettings, run_demo
    from transferkit.finetune import STRATEGIES

    ks = parse_shots(shots)
    if seeds < 1 or any(k is None or k < 1 for k in ks):
        raise TransferkitError(f"--shots takes whole numbers >= 1 and --seeds must be >= 1; got shots={shots}, "
                               f"seeds={seeds}.")
    names = tuple(n.strip() for n in strategies.split(",") if n.strip())
    methods = tuple(n.strip() for n in adapt.split(",") if n.strip())
    for n in names + methods:
        STRATEGIES.get(n)  # unknown names fail here, with a suggestion, before any training
    run_demo(out, overwrite=overwrite, settings=DemoSettings(shots=tuple(ks), seeds=seeds), strategies=names,
             adapt=methods, console=console)


@app.command("download-weights")
def download_weights_(arch: Annotated[str, typer.Argument(help="A torchvision architecture, e.g. resnet18.")]) -> None:
    """Fetch torchvision's ImageNet weights into the torch cache (the only command that downloads)."""
    from transferkit.backbones.tv import ARCHS, imagenet_weights_file
    from transferkit.backbones.weights import download_weights
    from transferkit.errors import unknown_name

    if arch not in ARCHS:
        raise unknown_name("architecture", arch, ARCHS)
    path, url = imagenet_weights_file(arch)
    console.print(f"Downloaded to {download_weights(url, path)}")


@app.command("compare")
def compare_(
    config: Annotated[Path, typer.Argument(help="YAML config of the target task and source model.")],
    strategies: Annotated[Optional[str], typer.Option(
        help="Comma-separated strategies or variants; from-scratch is always added (default: compare.strategies).")] = None,
    shots: Annotated[Optional[str], typer.Option(
        help="Labelled examples per class, e.g. 1,5,10,all (default: compare.shots).")] = None,
    seeds: Annotated[Optional[int], typer.Option(help="Seeds per strategy and shot count (default: compare.seeds).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a config key: train.epochs=5.")] = None,
    out: Annotated[Path, typer.Option(help="Directory for all runs and the report.")] = Path("runs/compare"),
    overwrite: Annotated[bool, typer.Option(help="Replace an existing directory.")] = False,
    resume: Annotated[bool, typer.Option(
        help="Go on with the comparison in --out: keep the runs that finished, train the others.")] = False,
    executor: ExecutorOption = "serial",
    workers: WorkersOption = None,
    address: AddressOption = None,
) -> None:
    """Every strategy x label budget x seed, with from-scratch; one report with a negative-transfer flag."""
    from transferkit.compare import compare, parse_shots
    from transferkit.config import load_config

    cfg = load_config(config, set_ or [])
    names = [s.strip() for s in strategies.split(",") if s.strip()] if strategies is not None else None
    compare(cfg, names, parse_shots(shots) if shots is not None else None, seeds, out,
            overwrite=overwrite, console=console, title=f"transferkit compare: {cfg.name or config.stem}",
            resume=resume, executor=executor, workers=workers, address=address)


def adapt_tables(rows: list[dict], title: str, width: int = WIDTH) -> list[Table]:
    """The terminal table of ``transferkit adapt``: target accuracy of source-only 1-NN and the method."""
    base = rows[0]["accuracy"]
    cells = [[r["method"], r["classifier"], f"{100 * r['accuracy']:.2f}",
              "" if i == 0 else f"{100 * (r['accuracy'] - base):+.2f}", f"{r['seconds']:.1f}"] for i, r in enumerate(rows)]
    return fitted_tables(title, ["method", "classifier", "target accuracy %", "vs source only", "seconds"], cells,
                         keep=2, width=width)


@app.command("adapt")
def adapt_(
    method: Annotated[str, typer.Option(help="Shallow method: coral, tca, sa, ot, kmm (skada), jda, bda.")],
    source: Annotated[str, typer.Option(help="Labelled source: name:domain (e.g. mnist_usps:usps) or a .npz path.")],
    target: Annotated[str, typer.Option(help="Target, same form; its labels are used only to score.")],
    preprocess: Annotated[str, typer.Option(help="Per domain: l2 (unit-norm rows), zscore (SURF counts), none.")] = "l2",
    backbone: Annotated[Optional[str], typer.Option(help="Encode the inputs with this backbone (else flatten).")] = None,
    weights: Annotated[Optional[Path], typer.Option(help="Weights file of --backbone.")] = None,
    args: Annotated[Optional[list[str]], typer.Option("--args", help="A method argument key=value (repeatable).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write results.json to this directory.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out directory.")] = False,
) -> None:
    """Classic domain adaptation of one pair (transductive): source-only 1-NN vs the adapted method on the target."""
    from transferkit.runs.classic import adapt, parse_args

    rows = adapt(method, source, target, preprocessing=preprocess, args=parse_args(args), backbone=backbone,
                 weights=weights, out=out, overwrite=overwrite)
    for table in adapt_tables(rows, f"adapt {source} -> {target}", console.width):
        console.print(table)
    if out is not None:
        console.print(f"Results written to {out / 'results.json'}")


@app.command("rank")
def rank_(
    data: Annotated[str, typer.Option(help="Target data: name:domain (e.g. mnist_usps:usps), an .npz, a folder.")],
    candidates: Annotated[str, typer.Option(
        help="Comma-separated: run directories, BACKBONE=WEIGHTS (small_cnn=w.safetensors, resnet18=imagenet), "
             "Hugging Face folders, random:BACKBONE.")],
    metric: Annotated[str, typer.Option(help="The score that orders the table (every applicable one is computed).")] =
        "logme",
    shots: Annotated[Optional[int], typer.Option(help="Score on K labelled target examples per class (seeded).")] = None,
    out: Annotated[Path, typer.Option(help="Directory for rank.csv, rank.html and inputs.json.")] = Path("runs/rank"),
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out directory.")] = False,
    data_dir: Annotated[Optional[Path], typer.Option(help="Folder of named datasets (default $TRANSFERKIT_DATA).")] =
        None,
    seed: Annotated[int, typer.Option(help="Seed of the test split and the --shots draw (the runs' data.seed).")] = 0,
    test_fraction: Annotated[float, typer.Option(
        help="The target's test split left unread (the runs' data.test_fraction; 0 reads every row).")] = 0.2,
) -> None:
    """Rank candidate source models for a target by transferability scores (LogME, LEEP ...), before fine-tuning."""
    from transferkit.api import rank as api_rank
    from transferkit.runs.rank import table_rows

    if shots is not None and shots < 1:
        raise TransferkitError(f"--shots takes a whole number >= 1 (labelled examples per class); got {shots}.")
    res = api_rank(data, candidates, metric=metric, shots=shots, out=out, overwrite=overwrite, data_dir=data_dir,
                   seed=seed, test_fraction=test_fraction)
    headers, cells = table_rows(res)
    for table in fitted_tables(f"rank: {data} (by {metric}, higher is better)", headers, cells, keep=2,
                               width=console.width):
        console.print(table)
    if res.warning:
        console.print(f"[yellow]Warning:[/] {res.warning}", highlight=False)
    console.print(f"Ranking written to {out} (rank.csv, report: {out / 'rank.html'})")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2 (tracebacks with --debug)."""
    try:
        app(standalone_mode=False)
    except TransferkitError as e:
        if STATE["debug"]:
            raise
        err_console.print(f"[red]Error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)  # [brackets] as written
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("Interrupted.")
        sys.exit(130)
    except Exception as e:  # usage errors (typer's click), then anything unexpected
        usage = getattr(e, "show", None) and hasattr(e, "exit_code")
        if usage:
            e.show()
            sys.exit(e.exit_code)
        if type(e).__name__ == "Exit":
            sys.exit(getattr(e, "exit_code", 0))
        if STATE["debug"]:
            raise
        err_console.print(f"[red]Error:[/] {type(e).__name__}: {e} (run with --debug for the traceback)", highlight=False)
        sys.exit(1)

if __name__ == "__main__":
    main()
