"""The cells of an experiment grid: one run directory each, trained by an executor (``runs.executors``)
or, when it finished before (``summary.json``), read back, so a resumed grid trains only what is missing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console

from transferkit.api import guard_correct, load_run, prepare_run_dir, source_only, split_data, train
from transferkit.config import parse_config
from transferkit.errors import TransferkitError


GRID_FILE = "grid.json"  # what a comparison's directory was started with; --resume needs the same


def prepare_grid_dir(out: Path, grid_file: dict, overwrite: bool, resume: bool) -> None:
    """A new comparison directory (an existing one only with ``overwrite``), or, with ``resume``, the
    existing one when it was started with the same config and grid; ``grid.json`` records them."""
    text = json.dumps(grid_file, indent=2)
    if resume and overwrite:
        raise TransferkitError(f"--resume goes on with the comparison in '{out}' and --overwrite replaces it; "
                               "pass one of them.")
    if not resume:
        if out.exists() and any(out.iterdir()) and not overwrite:
            raise TransferkitError(f"'{out}' already exists; pass --resume to go on with that comparison, --overwrite "
                                   "to replace it, or choose another --out.")
        prepare_run_dir(out, overwrite, resume=False)
        (out / GRID_FILE).write_text(text)
    elif not (out / GRID_FILE).is_file():
        raise TransferkitError(f"Cannot resume '{out}': it is not a comparison directory (no {GRID_FILE}); check "
                               "--out, or leave --resume out to start one.")
    elif json.loads((out / GRID_FILE).read_text()) != json.loads(text):
        raise TransferkitError(f"Cannot resume '{out}' with another config, strategies, shots or seeds; give those "
                               "it was started with, or pass --overwrite instead of --resume to start again.")


@dataclass(frozen=True)
class Cell:
    """One run of a grid: its run directory and config."""

    key: tuple  # what the grid files the result under, e.g. (strategy, labels per class, seed)
    tag: str  # the run directory inside the grid's, e.g. full/k5/seed0
    config: dict  # the run's config
    run_dir: str  # absolute: the cell may run in another process, or on another machine
    what: str  # one line for the terminal: what the run is
    untrained: bool = False  # the source model as it is (api.source_only), which may not apply: then None


def run_cell(cell: Cell) -> dict | None:
    """Train one cell into its run directory and return the metrics the comparison collects, with the
    run's path and its guard correctness. A cell whose run finished before (it has ``summary.json``) is
    read back, its guard rows scored again by the saved model; one that did not is trained afresh.
    None when the source model has no head for the labels (nothing is written)."""
    out = Path(cell.run_dir)
    if (out / "summary.json").is_file():
        metrics = json.loads((out / "summary.json").read_text())
        return metrics | {"run": str(out), "guard_correct": scored(cell.config, out), "kept": True}
    if cell.untrained:
        res = source_only(cell.config, out, overwrite=True)
        if res is None:
            return None
    else:
        res = train(cell.config, out=out, overwrite=True)
    return res.metrics | {"run": str(out), "guard_correct": res.guard_correct}


def scored(config: dict, run_dir: str | Path) -> np.ndarray | None:
    """The guard correctness of the model saved in ``run_dir`` on the guard rows of ``config``'s split."""
    cfg = parse_config(config)
    rows = split_data(cfg)[3]
    return None if rows is None else guard_correct(load_run(run_dir).model, rows, cfg.train.eval_batch_size)


def run_cells(cells: list[Cell], runner, console: Console) -> list[dict | None]:
    """Every cell through the executor, one line each as it finishes; the results in the cells' order."""
    def done(i: int, res: dict | None) -> None:
        if res is None:
            return
        state = ("finished before, kept" if res.get("kept") else
                 f"test accuracy {100 * res['test/accuracy']:.1f} %" if "test/accuracy" in res else "done")
        console.print(f"[bold]{cells[i].tag}[/]: {cells[i].what}: {state}", highlight=False)
        if "auto" in res:
            console.print(f"  auto chose '{res['auto']['strategy']}': {res['auto']['reason']}", highlight=False)

    results = runner.map(run_cell, cells, done)
    for r in results:
        if r is not None:
            r.pop("kept", None)
    return results
