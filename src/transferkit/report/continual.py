"""The continual-learning report: accuracy-matrix heat-maps, each task's accuracy over time, and
the strategy comparison table, in one self-contained HTML file; read from the run's files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from transferkit.report import _style, save_figure, write_html  # noqa: E402


NOT_COMPARABLE = "n/a"
METRIC_LABELS = {"accuracy": "accuracy", "mAP": "mAP", "r2": "R²"}  # what a score matrix holds (results' "metric")


def metric_label(res: dict) -> str:
    """How a result's matrix entries are named: accuracy, or a multi-label / regression stream's score."""
    return METRIC_LABELS.get(res.get("metric", "accuracy"), res.get("metric", "accuracy"))
FWT_FOOTNOTE = ("FWT is n/a in class-IL: a class not trained yet is never predicted, so a future task's accuracy "
                "is near zero for every strategy and the figure does not compare them.")


FWT_R2_FOOTNOTE = ("FWT is n/a for R²: R² has no floor, so the untrained model's score on a task (the reference) "
                   "is an arbitrary negative number and the difference would measure it, not transfer.")


def footnotes(rows: list[dict]) -> list[str]:
    """The notes a comparison table needs: why its FWT cells say n/a."""
    return [note for note, needed in ((FWT_FOOTNOTE, any(r["setting"] == "class_il" for r in rows)),
                                      (FWT_R2_FOOTNOTE, any(r.get("metric") == "r2" for r in rows))) if needed]


def fwt_cell(row: dict):
    """The FWT column of a comparison row: its value, or n/a where the setting has none (class-IL)."""
    return row.get("fwt", NOT_COMPARABLE)


def plot_accuracy_matrix(R, tasks: list[str], path: Path, title: str, metric: str = "accuracy") -> Path:
    """Heat-map of ``R[i][j]`` (rows: after training task i; columns: tested on task j), in %."""
    R = 100 * np.asarray(R, dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(tasks), 0.8 + 0.5 * len(R)))
    im = ax.imshow(R, vmin=0, vmax=100, cmap="viridis")
    if len(tasks) <= 12:
        for i in range(R.shape[0]):
            for j in range(R.shape[1]):
                ax.text(j, i, f"{R[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if R[i, j] < 60 else "black")
    step = max(1, len(tasks) // 10)
    ax.set_xticks(range(0, len(tasks), step), [tasks[j] for j in range(0, len(tasks), step)], rotation=45, fontsize=7)
    ax.set_yticks(range(0, len(R), step), [f"after {tasks[i]}" for i in range(0, len(R), step)], fontsize=7)
    ax.set(xlabel="tested on", title=title)
    fig.colorbar(im, ax=ax, label=f"{metric} %")
    return save_figure(fig, path)


def plot_task_curves(R, tasks: list[str], path: Path, title: str, metric: str = "accuracy") -> Path:
    """Accuracy of each task (one line each) after every training task: forgetting shows as a fall."""
    R = 100 * np.asarray(R, dtype=float)
    fig, ax = plt.subplots(figsize=(7, 4))
    for j, name in enumerate(tasks):
        xs = list(range(j, len(R)))
        if xs:
            ax.plot([x + 1 for x in xs], R[j:, j], marker="o" if len(R) <= 20 else None, label=name if len(tasks) <= 10 else None)
    ax.plot(range(1, len(R) + 1), [R[i, :i + 1].mean() for i in range(len(R))], color="black", lw=2.5,
            label="mean over tasks seen")
    ax.set_ylim(0, 101)
    ax.set_xticks(range(1, len(R) + 1, max(1, len(R) // 10)))
    _style(ax, "tasks trained", f"{metric} %", title)
    return save_figure(fig, path)


def read_results(out: Path, labels: list[str] | None = None) -> dict[str, dict]:
    """The results of a continual run directory by strategy label: ``results.json`` of the main
    strategy, then ``compare/<label>/results.json`` of each compared one (``labels`` in order;
    default: every folder under ``compare/``, sorted)."""
    out = Path(out)
    main = json.loads((out / "results.json").read_text())
    if labels is None:
        labels = [main["strategy"], *sorted(p.parent.name for p in (out / "compare").glob("*/results.json"))]
    return {label: main if i == 0 else json.loads((out / "compare" / label / "results.json").read_text())
            for i, label in enumerate(labels)}


def comparison_rows(results: dict[str, dict]) -> list[dict]:
    """One row per strategy and setting: accuracy, forgetting, BWT, FWT (%), time, peak memory,
    from each strategy's results (``results.json``: its summary and per-task records)."""
    rows = []
    for label, res in results.items():
        per_task = res["per_task"]
        for setting, m in res["summary"].items():
            rows.append({"strategy": label, "setting": setting} | {k: round(100 * v, 2) for k, v in m.items()} | {
                "seconds": round(float(np.sum([t["seconds"] for t in per_task])), 1),
                "peak_memory_mb": max(t["peak_memory_mb"] for t in per_task),
                "buffer_kib": round(max(t["buffer_bytes"] for t in per_task) / 1024, 1),
                "params_added": int(np.sum([t["new_params"] for t in per_task])),
                "metric": res.get("metric", "accuracy")})
    return rows


def continual_report(out: Path, title: str, labels: list[str] | None = None) -> Path:
    """``comparison.csv`` and ``report.html`` (+ PNGs) from the results files of the run in ``out``."""
    out = Path(out)
    results = read_results(out, labels)
    rows = comparison_rows(results)
    if rows:
        with open(out / "comparison.csv", "w", newline="", encoding="utf-8") as f:
            fields = list(dict.fromkeys([*max(rows, key=len), *(k for r in rows for k in r)]))  # class-IL has no FWT
            w = csv.DictWriter(f, fieldnames=fields, restval=NOT_COMPARABLE)
            w.writeheader()
            w.writerows(rows)
    images = []
    for label, res in results.items():
        for setting, R in res["matrices"].items():
            if len(R) == len(res["tasks"]):
                tag, metric = f"{label}_{setting}".replace("+", "_"), metric_label(res)
                images.append((f"{label}, {setting}: {metric} matrix",
                               plot_accuracy_matrix(R, res["tasks"], out / f"matrix_{tag}.png", f"{label} ({setting})",
                                                    metric)))
                images.append((f"{label}, {setting}: {metric} of each task over time",
                               plot_task_curves(R, res["tasks"], out / f"curves_{tag}.png", f"{label} ({setting})",
                                                metric)))
    first = next(iter(results.values()))
    metric = metric_label(first)
    headers = ["strategy", "setting", f"avg {metric} %", "forgetting %", "BWT %", "FWT %", "seconds",
               "peak memory MB", "buffer KiB", "params added"]
    table = [[r["strategy"], r["setting"], r["average_accuracy"], r["forgetting"], r["bwt"], fwt_cell(r),
              r["seconds"], r["peak_memory_mb"], r["buffer_kib"], r["params_added"]] for r in rows]
    per_task = [[t["task"], t["name"], t["seconds"], t["peak_memory_mb"], round(t["buffer_bytes"] / 1024, 1),
                 t["new_params"], *[f"{100 * v:.1f}" for k, v in t.items() if k.startswith("seen_accuracy/")]]
                for t in first["per_task"]]
    settings = [k.split("/")[1] for k in first["per_task"][0] if k.startswith("seen_accuracy/")] if first["per_task"] else []
    return write_html(out / "report.html", f"transferkit continual: {title}",
                      f"Stream {first['stream']} ({first['scenario']}-incremental, {len(first['tasks'])} tasks). "
                      f"Average {metric} over all tasks after the last; forgetting = best earlier {metric} minus final; "
                      "BWT/FWT as in Lopez-Paz & Ranzato (2017), FWT against the randomly initialised model. "
                      + " ".join(footnotes(rows)),
                      [("Strategy comparison", headers, table),
                       (f"Per task ({first['strategy']})", ["task", "name", "seconds", "peak memory MB", "buffer KiB",
                                                            "params added"] + [f"mean {metric} seen ({s}) %" for s in settings],
                        per_task)],
                      images)
