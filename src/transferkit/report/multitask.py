"""The multi-task report: the delta-m table, per-task validation curves, the task weights over
training, and heat-maps of the pairwise cosine similarity of the task gradients."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from transferkit.report import _style, save_figure, write_html  # noqa: E402


def _metric_key(history: list[dict], task: str) -> str | None:
    for key in (f"val/{task}/accuracy", f"val/{task}/mAP", f"val/{task}/mse"):
        if any(key in r for r in history):
            return key
    return None


def plot_task_curves(histories: dict[str, list[dict]], tasks: list[str], path: Path) -> Path:
    """One panel per task: its validation metric per epoch, one line per model."""
    cols = min(len(tasks), 4)
    rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        key = None
        for label, hist in histories.items():
            key = _metric_key(hist, task)
            pts = [(r["epoch"], 100 * r[key] if key.endswith("accuracy") else r[key]) for r in hist if key and key in r]
            if pts:
                ax.plot(*zip(*pts), label=label, ls="--" if label == "single-task" else "-",
                        lw=2 if label == "single-task" else 1)
        _style(ax, "epoch", {"mse": "val MSE", "mAP": "val mAP"}.get((key or "").rsplit("/", 1)[-1], "val accuracy %"), task)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    return save_figure(fig, path)


def plot_weights(histories: dict[str, list[dict]], tasks: list[str], path: Path) -> Path:
    """One panel per weighter: each task's mean loss weight per epoch."""
    names = list(histories)
    cols = min(len(names), 4)
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        values = []
        for task in tasks:
            pts = [(r["epoch"], r[f"train/weight/{task}"]) for r in histories[name] if f"train/weight/{task}" in r]
            if pts:
                ax.plot(*zip(*pts), label=task, marker="." if len(pts) < 30 else None)
                values += [v for _, v in pts]
        if values and min(values) > 0 and max(values) > 50 * float(np.median(values)):
            ax.set_yscale("log")  # e.g. CAGrad's weight on a task whose gradient has almost vanished
        _style(ax, "epoch", "weight", name)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    return save_figure(fig, path)


def cosine_matrix(history: list[dict], tasks: list[str]) -> np.ndarray | None:
    """The mean over training of the logged pairwise task-gradient cosines, as a ``T x T`` matrix."""
    T = len(tasks)
    M, seen = np.eye(T), False
    for i in range(T):
        for j in range(i + 1, T):
            vals = [r[f"train/gradcos/{tasks[i]}|{tasks[j]}"] for r in history if f"train/gradcos/{tasks[i]}|{tasks[j]}" in r]
            if vals:
                M[i, j] = M[j, i] = float(np.mean(vals))
                seen = True
    return M if seen else None


def plot_similarity(histories: dict[str, list[dict]], tasks: list[str], path: Path) -> Path | None:
    """Heat-maps of the mean pairwise cosine of the task gradients (red: the tasks conflict), one per
    weighter, and the cosine of each pair per epoch for the first weighter."""
    mats = {n: m for n, h in histories.items() if (m := cosine_matrix(h, tasks)) is not None}
    if not mats:
        return None
    cols = min(len(mats), 4) + 1
    rows = -(-len(mats) // (cols - 1))
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.0 * rows), squeeze=False)
    im = None
    for k, (name, M) in enumerate(mats.items()):
        ax = axes[k // (cols - 1), k % (cols - 1)]
        im = ax.imshow(M, vmin=-1, vmax=1, cmap="RdBu")
        for i in range(len(tasks)):
            for j in range(len(tasks)):
                ax.text(j, i, f"{M[i, j]:.2f}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(tasks)), tasks, rotation=45, fontsize=7)
        ax.set_yticks(range(len(tasks)), tasks if k % (cols - 1) == 0 else [], fontsize=7)
        ax.set_title(name, fontsize=9)
    first = next(iter(mats))
    ax = axes[0, -1]
    for i, a in enumerate(tasks):
        for b in tasks[i + 1:]:
            pts = [(r["epoch"], r[f"train/gradcos/{a}|{b}"]) for r in histories[first] if f"train/gradcos/{a}|{b}" in r]
            if pts:
                ax.plot(*zip(*pts), label=f"{a}|{b}")
    ax.axhline(0, color="black", lw=0.8)
    _style(ax, "epoch", "cosine", f"{first}: over training")
    used = {(k // (cols - 1), k % (cols - 1)) for k in range(len(mats))} | {(0, cols - 1)}
    for r in range(rows):
        for c in range(cols):
            if (r, c) not in used:
                axes[r, c].axis("off")
    fig.colorbar(im, ax=axes[:, :-1].ravel().tolist(), label="cosine", shrink=0.8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def delta_m_rows(summary: dict, tasks: list[str]) -> tuple[list[str], list[list]]:
    headers = ["model", *[f"{t} %" for t in tasks], "mean %", "Δm %", "seconds per seed"]
    rows = []
    for name, e in summary.items():
        vals = [e["tasks"][t] for t in tasks]
        cells = [f"{100 * v['mean']:.2f} ± {100 * v.get('std', 0):.2f}" for v in vals]
        dm = f"{e['delta_m']:+.2f} ± {e['delta_m_std']:.2f}" if "delta_m" in e else ("0 (baseline)" if name == "single_task" else "")
        rows.append([name, *cells, f"{100 * np.mean([v['mean'] for v in vals]):.2f}", dm, f"{e.get('seconds', 0):.1f}"])
    return headers, rows


def multitask_report(out: Path, results: list[dict], summary: dict, tasks: list[str], title: str) -> Path:
    out = Path(out)
    first = {r["name"]: r["history"] for r in results if r["kind"] == "multi" and r["seed"] == 0}
    curves = dict(first)
    single = [r for r in results if r["kind"] == "single" and r["seed"] == 0]
    if single:  # the single-task models' curves merged into one line per task
        curves["single-task"] = [dict(kv for r in single for kv in r["history"][e].items() if kv[0] != "epoch") | {"epoch": e + 1}
                                 for e in range(min(len(r["history"]) for r in single))]
    images = [("Per-task validation curves", plot_task_curves(curves, tasks, out / "task_curves.png")),
              ("Task weights over training (mean per epoch)", plot_weights(first, tasks, out / "weights.png"))]
    sim = plot_similarity(first, tasks, out / "gradient_similarity.png")
    if sim:
        images.append(("Task-gradient cosine similarity (shared parameters; negative = conflict)", sim))
    headers, rows = delta_m_rows(summary, tasks)
    seeds = max((e.get("seeds", 1) for e in summary.values()), default=1)
    return write_html(out / "report.html", f"transferkit multitask: {title}",
                      f"{len(tasks)} tasks ({', '.join(tasks)}); test metrics as mean ± std over {seeds} seed(s). "
                      "Δm % = mean over tasks of the relative change against the single-task models "
                      "(positive: multi-task training is better on average).",
                      [("Δm against single-task training", headers, rows)], images)
