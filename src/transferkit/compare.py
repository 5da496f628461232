"""Compare strategies x label budgets x seeds on one config; one report with a negative-transfer flag."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from transferkit.config import RunConfig, parse_config
from transferkit.errors import TransferkitError
from transferkit.finetune import STRATEGIES
from transferkit.metrics import mean_std
from transferkit.report import plot_bars, plot_curves, plot_learning_curves, read_metrics, write_html
from transferkit.report.transfer import plot_what_transferred, what_transferred
from transferkit.runs.executors import create_executor
from transferkit.runs.grid import Cell, prepare_grid_dir, run_cells, scored
from transferkit.runs.guard import guard_rows
from transferkit.select.guard import beyond_noise, guard_warning, paired_guard
from transferkit.tables import WIDTH, fitted_tables

BASELINE = "scratch"
SOURCE_ONLY = "source_only"  # the source model as it is, or trained on the source data alone
BASELINES = (BASELINE, SOURCE_ONLY)
FULL = "full"  # the reference for parameter-efficient strategies
AUTO = "auto"  # strategy auto: each run chooses its strategy (runs/auto.py); the row says which
LABELS = {"scratch": "from scratch", "feature_extraction": "feature extraction (cached)", "full": "full fine-tuning",
          "two_stage": "two-stage fine-tuning", "source_only": "source only",
          "full_adapted": "fine-tuning of the adapted model",
          "auto": "auto (chosen strategy)"}  # the demo's variant: full, from a DA run's weights


def label(name: str) -> str:
    return LABELS.get(name, name)


def parse_shots(text: str) -> list[int | None]:
    """``"1,5,all"`` -> ``[1, 5, None]`` (None: every training example)."""
    out: list[int | None] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part == "all":
            out.append(None)
        elif part.isdigit():
            out.append(int(part))
        else:
            raise TransferkitError(f"--shots takes whole numbers (0 with data.source) or 'all', comma-separated; "
                                   f"got '{part}'.")
    if not out:
        raise TransferkitError("--shots is empty; give e.g. --shots 1,5,10,all.")
    return out


def negative_transfer(transfer: list[float], scratch: list[float]) -> bool:
    """True when the transfer mean (one accuracy per seed) is not above the baseline's beyond seed noise
    (``select.guard.beyond_noise``: more than ``t_{0.95, n-1}`` standard errors of the difference)."""
    return not beyond_noise(transfer, scratch)


def plan(cfg: RunConfig, strategies: list[str]) -> dict[str, dict]:
    """Each compared entry -> ``{"strategy", "args", "model", "train"}``: a strategy name (``args`` from the
    config's strategy section when it is that strategy) or a variant from ``compare.variants``."""
    entries = {}
    for name in [BASELINE] + [s for s in dict.fromkeys(strategies) if s not in BASELINES]:  # source-only: added when it applies
        v = cfg.compare.variants.get(name)
        strategy = (v.strategy if v and v.strategy else name)
        for part in strategy.split("+"):
            if strategy == AUTO:
                break  # chosen per run from the data (select/auto.py)
            try:
                STRATEGIES.get(part.strip())
            except TransferkitError as e:
                if v is None and cfg.compare.variants:
                    raise TransferkitError(f"{e} Variants in the config: {', '.join(cfg.compare.variants)}.") from None
                raise
        args = v.args if v else (cfg.strategy.args if name == cfg.strategy.name else {})
        entries[name] = {"strategy": strategy, "args": args, "model": v.model if v else {}, "train": v.train if v else {}}
    return entries


def compare(base: RunConfig | dict, strategies: list[str] | None = None, shots: list[int | None] | None = None,
            seeds: int | None = None, out: str | Path = "runs/compare", overwrite: bool = False,
            console: Console | None = None, title: str = "transferkit compare", intro: str = "", new_dir: bool = True,
            extra_curves: dict[str, list[dict]] | None = None, show_table: bool = True, resume: bool = False,
            executor: str = "serial", workers: int | None = None, address: str | None = None) -> list[dict]:
    """Train every strategy (plus the from-scratch baseline) at every label budget and seed.

    ``strategies``, ``shots`` and ``seeds`` default to the config's ``compare`` section; a name there
    may be a variant (a strategy with its own arguments or model). Writes ``results.json``,
    ``results.csv`` and ``report.html`` in ``out`` and returns the rows. ``new_dir=False`` writes
    into an ``out`` that the caller has prepared (the demo's source run is there).

    Each cell of the grid (strategy x budget x seed) is one run directory ``out/<name>/k<k>/seed<s>``;
    ``executor`` runs them (``runs.executors``: ``serial`` here, or ``ray`` on a local Ray of ``workers``
    CPUs or the cluster at ``address``) and the tables are the same under either. ``resume=True`` goes
    on with the comparison in ``out``: cells whose run finished (``summary.json``) are read back, the
    others are trained again.

    Example:
        >>> compare({"data": {"dataset": "mnist_usps:usps", "test_fraction": "rest", "val_fraction": 0}},
        ...         ["full", "lora"], shots=[1, 5, 10], seeds=3, out="runs/compare")
    """
    console = console or Console()
    cfg = base if isinstance(base, RunConfig) else parse_config(base)
    if cfg.model.task != "classification":
        raise TransferkitError(f"compare reports test accuracy per label budget, so it needs model.task "
                               f"'classification' (got '{cfg.model.task}'); train each strategy with `transferkit train`.")
    strategies = strategies if strategies is not None else cfg.compare.strategies
    shots = shots if shots is not None else [None if k == "all" else k for k in cfg.compare.shots]
    seeds = seeds if seeds is not None else cfg.compare.seeds
    entries = plan(cfg, strategies)
    if seeds < 1:
        raise TransferkitError(f"--seeds must be >= 1; got {seeds}.")
    runner = create_executor(executor, workers, address)
    out = Path(out)
    root = out.absolute()  # the cells may run in other processes, or on other machines
    grid_file = {"config": cfg.model_dump(mode="json"), "entries": entries, "shots": shots, "seeds": seeds}
    if new_dir:
        prepare_grid_dir(out, grid_file, overwrite, resume)
    cfg, note = guard_rows(cfg)
    if note and any(k != 0 for k in shots):
        console.print(note)
    cells = grid(cfg, entries, shots, seeds, root)
    results = run_cells(cells, runner, console)
    untrained = [r for c, r in zip(cells, results) if c.untrained]
    if cfg.data.source is not None and untrained and all(r is None for r in untrained):
        trained = [source_cell(cfg, seed, root) for seed in range(seeds)]  # no source head: the source data alone
        cells, results = cells + trained, results + run_cells(trained, runner, console)
    runs = collect(cfg, cells, results, shots)
    rows = summarise(runs)
    (out / "results.json").write_text(json.dumps({"config": cfg.model_dump(mode="json"), "rows": rows}, indent=2))
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_report(out, rows, runs, title, intro, extra_curves or {}, note)
    if show_table:  # the demo prints one table of several comparisons instead
        print_table(rows, console, title)
        console.print(f"Report: {out / 'report.html'}")
    print_warnings(rows, console)
    return rows


def run_config(cfg: RunConfig, entry: dict, tag: str, k: int | None, seed: int) -> dict:
    """The config of one compared run: ``cfg`` with the entry's strategy / model / train keys, ``k`` labels
    per class and ``seed``."""
    run_cfg = cfg.model_dump(mode="json", exclude={"compare"})
    run_cfg["name"] = tag.replace("/", "-")
    run_cfg["data"] |= {"shots": k, "seed": seed}
    if k == 0:  # no target label at all: nothing to hold out for the guard
        run_cfg["data"]["guard_fraction"] = 0.0
    run_cfg["model"] |= entry["model"]
    run_cfg["train"] |= entry["train"] | {"seed": seed}
    run_cfg["strategy"] = {"name": entry["strategy"], "args": entry["args"]}
    if seed > 0:
        run_cfg["report"]["feature_map"] = "none"  # the report shows seed 0's map, as its learning curves
    return run_cfg


def _tag(name: str, k, seed: int) -> str:
    return f"{name}/k{'all' if k is None else k}/seed{seed}"


def grid(cfg: RunConfig, entries: dict[str, dict], shots: list[int | None], seeds: int, out: Path) -> list[Cell]:
    """The cells in the order of the tables: per budget, every entry at every seed, then the source model
    as it is (when ``model.weights`` is set; ``run_cell`` says whether it applies); with ``data.source``
    and no ``model.weights``, the source-only model trained on the source data, per seed."""
    cells = []
    for k in shots:
        for name, entry in entries.items():
            if k == 0 and name == BASELINE:
                continue  # no target label to train from scratch on; source-only is the baseline
            for seed in range(seeds):
                tag = _tag(name, k, seed)
                what = f"{label(name)}, {'all' if k is None else k} labels per class, seed {seed}"
                cells.append(Cell((name, k, seed), tag, run_config(cfg, entry, tag, k, seed), str(out / tag), what))
        if cfg.model.weights:
            for seed in range(seeds):
                tag = _tag(SOURCE_ONLY, k, seed)
                cells.append(Cell((SOURCE_ONLY, k, seed), tag, run_config(cfg, SOURCE_ENTRY, tag, k, seed),
                                  str(out / tag), f"the source model as it is, on seed {seed}'s test set",
                                  untrained=True))
    if cfg.data.source is not None and not cfg.model.weights:  # no source head to try: the source data alone
        cells += [source_cell(cfg, seed, out) for seed in range(seeds)]
    return cells


SOURCE_ENTRY = {"strategy": FULL, "args": {}, "model": {}, "train": {}}  # the source-only runs' settings
TRAINED = "trained"  # the budget key of the source-only model trained on the source data (at 0 target labels)


def source_cell(cfg: RunConfig, seed: int, out: Path) -> Cell:
    """The model trained on the source data alone (no target label), once per seed, shown at every budget."""
    tag = f"{SOURCE_ONLY}/{TRAINED}/seed{seed}"
    return Cell((SOURCE_ONLY, TRAINED, seed), tag, run_config(cfg, SOURCE_ENTRY, tag, 0, seed), str(out / tag),
                f"trained on the source data alone, seed {seed}")


def collect(cfg: RunConfig, cells: list[Cell], results: list[dict | None],
            shots: list[int | None]) -> dict[tuple[str, int | None], list[dict]]:
    """The cells' results keyed by (entry, budget) in the order of the tables; the source model trained on
    the source data is listed at every budget, scored on that budget's guard rows (none at 0 labels)."""
    runs: dict[tuple[str, int | None], list[dict]] = {}
    trained = [(c, r) for c, r in zip(cells, results) if c.key[1] == TRAINED]
    for k in shots:
        for cell, res in zip(cells, results):
            if cell.key[1] == k and res is not None:
                runs.setdefault(cell.key[:2], []).append(res)
        for cell, res in trained:
            seed = cell.key[2]
            rows_cfg = run_config(cfg, SOURCE_ENTRY, _tag(SOURCE_ONLY, k, seed), k, seed)
            correct = None if k == 0 else scored(rows_cfg, res["run"])
            runs.setdefault((SOURCE_ONLY, k), []).append(res | {"guard_correct": correct})
    return runs


def _correct(results: list[dict]) -> list | None:
    """The runs' per-row guard correctness, one array per seed, or None when any run has none."""
    out = [r.get("guard_correct") for r in results]
    return None if not out or any(c is None or len(c) < 2 for c in out) else out


def best_baseline(runs: dict, k) -> tuple[str | None, list[float]]:
    """The baseline (from scratch or source-only) with the higher mean accuracy on the guard validation rows
    at ``k`` (never the test set; the only baseline when they have no such rows), and its test accuracies."""
    options = [n for n in BASELINES if runs.get((n, k))]
    scored = [n for n in options if _correct(runs[(n, k)])]
    if scored:
        options = [max(scored, key=lambda n: sum(c.mean() for c in _correct(runs[(n, k)])))]
    if len(options) != 1:
        return None, []
    return options[0], [100 * r["test/accuracy"] for r in runs[(options[0], k)]]


def guard(runs: dict, name: str, k, baseline: str | None) -> dict:
    """The guard's verdict on ``name`` at ``k`` against ``baseline``, on the validation rows of each seed:
    ``guard_accuracy`` (%), ``guard_difference`` / ``guard_se`` (points), ``negative_transfer``, ``warning``."""
    none = {"guard_accuracy": float("nan"), "guard_difference": float("nan"), "guard_se": float("nan"),
            "negative_transfer": False, "warning": ""}
    mine = _correct(runs[(name, k)])
    if mine is None:
        return none | (after_the_fact(runs, name, baseline) if k == 0 else {})
    none["guard_accuracy"] = 100 * sum(c.mean() for c in mine) / len(mine)
    theirs = _correct(runs.get((baseline, k), []))
    if name in BASELINES or theirs is None or len(theirs) != len(mine):
        return none
    res = paired_guard(mine, theirs)
    budget = "every label" if k is None else f"{k} label{'s' if k != 1 else ''} per class"
    warning = guard_warning(res, f"{label(name)} at {budget}", label(baseline))
    return {"guard_accuracy": 100 * res.transfer, "guard_difference": 100 * res.difference, "guard_se": 100 * res.se,
            "negative_transfer": warning is not None, "warning": warning or ""}


def after_the_fact(runs: dict, name: str, baseline: str | None) -> dict:
    """At 0 target labels there is no row to validate on: the flag compares test accuracies across seeds
    instead (``negative_transfer``), after the fact, and its warning says so."""
    if name in BASELINES or baseline is None or not runs.get((baseline, 0)):
        return {}
    mine, theirs = ([100 * r["test/accuracy"] for r in runs[(n, 0)]] for n in (name, baseline))
    if not negative_transfer(mine, theirs):
        return {}
    (m, _), (b, _) = mean_std(mine), mean_std(theirs)
    return {"negative_transfer": True,
            "warning": f"{label(name)} at 0 labels per class is not above {label(baseline)} on the test set "
                       f"({m:.1f} % vs {b:.1f} %, {len(mine)} seeds): with no target label to validate on, this is "
                       "measured after the fact; prefer the baseline or label a few target examples."}


def summarise(runs: dict[tuple[str, int | None], list[dict]]) -> list[dict]:
    rows = []
    for (name, k), results in runs.items():
        if k == "trained":
            continue  # the source-only runs themselves, listed at each budget
        accs = [100 * r["test/accuracy"] for r in results]
        m, sd = mean_std(accs)
        base = [100 * r["test/accuracy"] for r in runs.get((BASELINE, k), [])]
        src = [100 * r["test/accuracy"] for r in runs.get((SOURCE_ONLY, k), [])]
        full = [100 * r["test/accuracy"] for r in runs.get((FULL, k), [])]
        best, best_accs = best_baseline(runs, k)
        rows.append({"strategy": name, "shots": k if k is not None else "all", "accuracy_mean": m, "accuracy_std": sd,
                     "vs_scratch": m - mean_std(base)[0] if base else float("nan"),
                     "vs_source_only": m - mean_std(src)[0] if src else float("nan"),
                     "vs_full": m - mean_std(full)[0] if full else float("nan"),
                     "baseline": best,
                     "vs_baseline": m - mean_std(best_accs)[0] if best_accs else float("nan"),
                     **guard(runs, name, k, best),
                     "trainable_parameters": results[0]["trainable_parameters"],
                     "trainable_vs_full": (results[0]["trainable_parameters"] / runs[(FULL, k)][0]["trainable_parameters"]
                                           if (FULL, k) in runs else float("nan")),
                     "train_seconds": sum(r["train_seconds"] for r in results) / len(results),
                     "train_examples": results[0]["train_examples"], "test_examples": results[0].get("test_examples"),
                     "seeds": len(results),
                     "chosen": ", ".join(sorted({r["auto"]["strategy"] for r in results if "auto" in r}))})
    return rows


NEGATIVE = "!"  # marks negative transfer in the terminal table


def _count(n: int) -> str:
    """``1234567`` -> ``1.23M``, ``45600`` -> ``45.6k`` (short enough for an 80-column table)."""
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e4 else f"{n:,}"


def results_tables(rows: list[dict], title: str, width: int = WIDTH) -> list[Table]:
    """The terminal table of ``compare`` and the demo (it fits ``width`` columns; see ``tables``)."""
    cells = []
    for r in rows:
        flag = f" {NEGATIVE}" if r["negative_transfer"] else ""
        frac = r["trainable_vs_full"]
        cells.append([label(r["strategy"]), r["shots"], f"{r['accuracy_mean']:.1f} ± {r['accuracy_std']:.1f}",
                      _versus(r) + flag,
                      _count(r["trainable_parameters"]), "" if math.isnan(frac) else f"{100 * frac:.1f}",
                      f"{r['train_seconds']:.1f}"])
    caption = (f"{NEGATIVE} possible negative transfer: on validation rows (at 0 labels: on the test set, after the "
               "fact), not above the better baseline (from scratch or source only) beyond noise"
               if any(r["negative_transfer"] for r in rows) else None)
    return fitted_tables(title, ["strategy", "shots", "test acc. %", "vs best baseline", "trained params", "% of full",
                                 "train s"], cells, width=width, caption=caption)


def _versus(row: dict) -> str:
    """The gain over the better baseline at the row's budget; empty for the baselines themselves."""
    if row["strategy"] in BASELINES or row.get("baseline") is None:
        return ""
    return f"{row['vs_baseline']:+.1f}"


def print_table(rows: list[dict], console: Console, title: str) -> None:
    for table in results_tables(rows, title, console.width):
        console.print(table)


def print_warnings(rows: list[dict], console: Console) -> None:
    """The guard's warnings, one sentence each (the rows flagged as possible negative transfer)."""
    for r in rows:
        if r.get("warning"):
            console.print(f"[yellow]Warning:[/] {r['warning']}", highlight=False)


def transfer_analysis(runs: dict, k: int | None, probe_size: int = 256) -> dict[str, list[dict]]:
    """Per transfer strategy (seed 0 at label budget ``k``): ``what_transferred`` against its source
    weights, on a probe batch of the run's test data. Runs that start from random weights are skipped."""
    from torch.utils.data import DataLoader

    from transferkit.api import build_data, load_run
    from transferkit.backbones import create_backbone

    out: dict[str, list[dict]] = {}
    probe = None
    for (name, kk), results in runs.items():
        if kk != k or name in BASELINES:
            continue
        run = load_run(results[0]["run"])
        m = run.cfg.model
        if m.weights is None:
            continue
        if probe is None:
            _, _, test = build_data(run.cfg)
            if test is None:
                return {}
            probe = next(iter(DataLoader(test, batch_size=probe_size, shuffle=False)))[0]
        source = create_backbone(m.backbone, weights=m.weights, **m.backbone_args)
        out[label(name)] = what_transferred(source, run.model.backbone, probe)
    return out


def _params(row: dict) -> str:
    frac = row["trainable_vs_full"]
    return f"{row['trainable_parameters']:,}" + ("" if math.isnan(frac) else f" ({100 * frac:.1f} % of full)")


def write_report(out: Path, rows: list[dict], runs: dict, title: str, intro: str,
                 extra_curves: dict[str, list[dict]], guard_note: str | None = None) -> Path:
    shots = list(dict.fromkeys(r["shots"] for r in rows))
    last = [r for r in rows if r["shots"] == shots[-1]]
    images = [("Accuracy by strategy", plot_bars(
        [label(r["strategy"]).replace(" ", "\n", 1) for r in last], [r["accuracy_mean"] for r in last],
        [r["accuracy_std"] for r in last], out / "accuracy_by_strategy.png", "test accuracy (%)",
        f"{shots[-1]} labels per class (mean ± std, {last[0]['seeds']} seeds)"))]
    if len(shots) > 1:
        curves = {label(n): [(r["shots"], r["accuracy_mean"], r["accuracy_std"]) for r in rows if r["strategy"] == n]
                  for n in dict.fromkeys(r["strategy"] for r in rows)}
        images.append(("Data efficiency", plot_curves(curves, out / "data_efficiency.png", "labelled examples per class",
                                                       "test accuracy (%)")))
    k_last = None if shots[-1] == "all" else shots[-1]
    lc = {label(n): read_metrics(Path(res[0]["run"])) for (n, k), res in runs.items() if k == k_last and n != SOURCE_ONLY}
    lc |= extra_curves
    images.append(("Learning curves (seed 0)", plot_learning_curves(lc, out / "learning_curves.png")))
    transferred = transfer_analysis(runs, k_last)
    if transferred:
        (out / "what_transferred.json").write_text(json.dumps(transferred, indent=2))
        images.append(("What transferred (seed 0): per backbone stage, weight change and feature similarity to the "
                       "source", plot_what_transferred(transferred, out / "what_transferred.png")))
    table = [[label(r["strategy"]), r["shots"], f"{r['accuracy_mean']:.1f} ± {r['accuracy_std']:.1f}",
              "" if r["strategy"] == BASELINE or math.isnan(r["vs_scratch"]) else f"{r['vs_scratch']:+.1f}",
              "" if r["strategy"] == SOURCE_ONLY or math.isnan(r["vs_source_only"]) else f"{r['vs_source_only']:+.1f}",
              "" if r["strategy"] == FULL or math.isnan(r["vs_full"]) else f"{r['vs_full']:+.1f}",
              "" if math.isnan(r["guard_accuracy"]) else f"{r['guard_accuracy']:.1f}",
              "yes" if r["negative_transfer"] else "", _params(r), f"{r['train_seconds']:.1f}"]
             for r in rows]
    note = ("Negative transfer (the guard): on labelled validation rows of the target, never the test set, the "
            "strategy is not better than the better of the baselines (from scratch; source only: the source model as "
            "it is, or trained on the source data alone) beyond noise: its paired gain must exceed 1.645 row standard "
            "errors and t_0.95 (S - 1 degrees of freedom) seed standard errors (transferkit.select.guard). The baseline "
            "is the better one on those same rows, which leans towards a warning. At 0 labels there is no target label to "
            "validate on: the flag then compares test accuracies, after the fact (not above the baseline by more than "
            "t_0.95 standard errors across seeds). The same numbers are in results.csv and results.json.")
    tables = [("Results", ["strategy", "labels/class", "test accuracy (%)", "vs scratch (points)",
                           "vs source only (points)", "vs full fine-tuning (points)", "validation accuracy (%)",
                           "negative transfer", "trainable parameters", "train seconds"], table)]
    warnings = [[r["warning"]] for r in rows if r["warning"]]
    if warnings:
        tables.append(("Warnings", ["negative-transfer guard"], warnings))
    return write_html(out / "report.html", title, " ".join(t for t in (intro, guard_note, note) if t), tables, images)
