"""The continual-learning report: accuracy-matrix heat-maps, each task's accuracy over time, and
the strategy comparison table, in one self-contained HTML file."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from transferkit.report import _style, save_figure, write_html  # noqa: E402


NOT_COMPARABLE = "n/a"
FWT_FOOTNOTE = ("FWT is n/a in class-IL: a class not trained yet is never predicted, so a future task's accuracy "
                "is near zero for every strategy and the figure does not compare them.")


def fwt_cell(row: dict):
    """The FWT column of a comparison row: its value, or n/a where the setting has none (class-IL)."""
    return row.get("fwt", NOT_COMPARABLE)


def plot_accuracy_matrix(R, tasks: list[str], path: Path, title: str) -> Path:
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
    fig.colorbar(im, ax=ax, label="accuracy %")
    return save_figure(fig, path)


def plot_task_curves(R, tasks: list[str], path: Path, title: str) -> Path:
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
    _style(ax, "tasks trained", "accuracy %", title)
    return save_figure(fig, path)


def continual_report(out: Path, results: dict, title: str) -> Path:
    from transferkit.continual.run import comparison_rows

    out = Path(out)
    rows = comparison_rows(results)
    if rows:
        with open(out / "comparison.csv", "w", newline="", encoding="utf-8") as f:
            fields = list(dict.fromkeys([*max(rows, key=len), *(k for r in rows for k in r)]))  # class-IL has no FWT
            w = csv.DictWriter(f, fieldnames=fields, restval=NOT_COMPARABLE)
            w.writeheader()
            w.writerows(rows)
    images = []
    for label, res in results.items():
        for setting, R in res.matrices.items():
            if len(R) == len(res.tasks):
                tag = f"{label}_{setting}".replace("+", "_")
                images.append((f"{label}, {setting}: accuracy matrix",
                               plot_accuracy_matrix(R, res.tasks, out / f"matrix_{tag}.png", f"{label} ({setting})")))
                images.append((f"{label}, {setting}: accuracy of each task over time",
                               plot_task_curves(R, res.tasks, out / f"curves_{tag}.png", f"{label} ({setting})")))
    headers = ["strategy", "setting", "avg accuracy %", "forgetting %", "BWT %", "FWT %", "seconds",
               "peak memory MB", "buffer KiB", "params added"]
    table = [[r["strategy"], r["setting"], r["average_accuracy"], r["forgetting"], r["bwt"], fwt_cell(r),
              r["seconds"], r["peak_memory_mb"], r["buffer_kib"], r["params_added"]] for r in rows]
    first = next(iter(results.values()))
    per_task = [[t["task"], t["name"], t["seconds"], t["peak_memory_mb"], round(t["buffer_bytes"] / 1024, 1),
                 t["new_params"], *[f"{100 * v:.1f}" for k, v in t.items() if k.startswith("seen_accuracy/")]]
                for t in first.per_task]
    settings = [k.split("/")[1] for k in first.per_task[0] if k.startswith("seen_accuracy/")] if first.per_task else []
    return write_html(out / "report.html", f"transferkit continual: {title}",
                      f"Stream {first.stream} ({first.scenario}-incremental, {len(first.tasks)} tasks). "
                      "Average accuracy over all tasks after the last; forgetting = best earlier accuracy minus final; "
                      "BWT/FWT as in Lopez-Paz & Ranzato (2017), FWT against the randomly initialised model. "
                      + (FWT_FOOTNOTE if any(r["setting"] == "class_il" for r in rows) else ""),
                      [("Strategy comparison", headers, table),
                       (f"Per task ({first.strategy})", ["task", "name", "seconds", "peak memory MB", "buffer KiB",
                                                         "params added"] + [f"mean acc. seen ({s}) %" for s in settings],
                        per_task)],
                      images)
