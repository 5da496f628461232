"""Reports: PNG plots (matplotlib, Agg) and a self-contained HTML page built from a run's files."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig, path: Path) -> Path:
    """Lay out, write as PNG, free the figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


TITLES = {"train/task": "training loss (task)", "val/accuracy": "validation accuracy", "val/loss": "validation loss",
          "val/mAP": "validation mAP", "val/mae": "validation MAE"}


def _style(ax, xlabel: str | None = None, ylabel: str | None = None, title: str | None = None) -> None:
    ax.set(**{k: v for k, v in (("xlabel", xlabel), ("ylabel", ylabel), ("title", title)) if v})
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def plot_learning_curves(curves: dict[str, list[dict]], path: Path,
                         keys: tuple[str, ...] = ("train/task", "val/accuracy", "val/mAP", "val/mae")) -> Path:
    """One panel per metric key that the runs logged (each task type's own), one line per named run (x = epoch)."""
    keys = tuple(k for k in keys if any(k in r for rows in curves.values() for r in rows))
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(5 * max(len(keys), 1), 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, rows in curves.items():
            pts = [(r["epoch"], r[key]) for r in rows if key in r]
            if pts:
                ax.plot(*zip(*pts), label=name, marker="." if len(pts) < 30 else None)
        _style(ax, "epoch", None, TITLES.get(key, key))
    return save_figure(fig, path)


def plot_curves(curves: dict[str, list[tuple]], path: Path, xlabel: str, ylabel: str) -> Path:
    """One line with a ±std band per name; x values may include "all" (plotted last)."""
    xs = sorted({x for pts in curves.values() for x, *_ in pts}, key=lambda v: (isinstance(v, str), v))
    pos = {x: i for i, x in enumerate(xs)}
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, pts in curves.items():
        pts = sorted(pts, key=lambda p: pos[p[0]])
        x = [pos[p[0]] for p in pts]
        m = [p[1] for p in pts]
        s = [p[2] for p in pts]
        ax.plot(x, m, marker="o", label=name)
        ax.fill_between(x, [a - b for a, b in zip(m, s)], [a + b for a, b in zip(m, s)], alpha=0.15)
    ax.set_xticks(range(len(xs)), [str(x) for x in xs])
    _style(ax, xlabel, ylabel)
    return save_figure(fig, path)


def plot_bars(names: list[str], means: list[float], stds: list[float], path: Path, ylabel: str, title: str) -> Path:
    """Bar chart with error bars (mean ± std), the value printed on each bar."""
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 3.8))
    bars = ax.bar(names, means, yerr=stds, capsize=4, color=plt.cm.tab10.colors[: len(names)])
    for b, m in zip(bars, means):
        ax.text(b.get_x() + b.get_width() / 2, m, f"{m:.1f}", ha="center", va="bottom", fontweight="bold")
    low = min(m - s for m, s in zip(means, stds))
    ax.set_ylim(max(0.0, low - 10), max(m + s for m, s in zip(means, stds)) + 2)  # zoom on the differences
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_html(path: Path, title: str, intro: str, tables: list[tuple[str, list[str], list[list]]],
               images: list[tuple[str, Path]], details: dict | None = None) -> Path:
    """A single HTML file: tables, then the PNGs embedded as base64, then a details block."""
    parts = [f"<h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>"]
    for caption, headers, rows in tables:
        parts.append(f"<h2>{html.escape(caption)}</h2>{_table(headers, rows)}")
    for caption, img in images:
        data = base64.b64encode(Path(img).read_bytes()).decode()
        parts.append(f'<h2>{html.escape(caption)}</h2><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">')
    if details:
        parts.append(f"<h2>Details</h2><pre>{html.escape(json.dumps(details, indent=2))}</pre>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
             "th{background:#f3f3f3}img{max-width:100%}")
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                    f"<style>{style}</style></head><body>{''.join(parts)}</body></html>", encoding="utf-8")
    return path


def guard_table(g: dict) -> tuple[str, list[str], list[list]]:
    """The report's table of ``train --guard``'s verdict (``runs.guard.verdict``)."""
    rows = [["verdict", g["warning"] or "the transfer is better than its baselines beyond noise"]]
    if "baseline" in g:
        rows += [["validation accuracy (%)", f"{100 * g['accuracy']:.1f}"]]
        rows += [[f"{n.replace('_', ' ')} (%)", f"{100 * v:.1f}"] for n, v in g["baselines"].items()]
        rows += [["difference vs the better baseline (points)", f"{100 * g['difference']:+.1f} ± {100 * g['se']:.1f}"],
                 ["validation rows", g["rows"]]]
    if g.get("note"):
        rows.append(["validation rows drawn", g["note"]])
    return ("Negative-transfer guard (validation rows of the target, never the test set)", ["", ""], rows)


def run_report(run_dir: Path, summary: dict) -> Path:
    """The report of a single run: test metrics, the learning curves, the resolved config."""
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    images = []
    if rows:
        images.append(("Learning curves", plot_learning_curves({summary.get("strategy", "run"): rows},
                                                               run_dir / "learning_curves.png")))
    metrics = [[k, f"{v:.4f}" if isinstance(v, float) else v] for k, v in summary.items() if not isinstance(v, (dict, list))]
    tables = [("Summary", ["metric", "value"], metrics)]
    if summary.get("guard"):  # train --guard
        tables.append(guard_table(summary["guard"]))
    if "domain_distance" in summary:  # a domain-adaptation run
        from transferkit.report.adapt import domain_distance_table

        d, sel = summary["domain_distance"], summary.get("selection", {})
        tables.append(("Domain distance between source and target features (before -> after training)",
                       *domain_distance_table([{"name": "this run"} | d])))
        chosen = (f"kept the weights of epoch {sel['epoch']}, chosen by {sel['monitor']}" if sel.get("monitor") else
                  f"kept the last epoch ({sel.get('epoch')}); no monitored metric chose")
        tables.append(("Selection", ["", ""], [["weights", chosen]] +
                       [[k, f"{v:.4f}"] for k, v in sel.items() if k not in ("monitor", "epoch")]))
        if (run_dir / "feature_map.png").is_file():
            images.append(("Source and target features before and after training (2-D map)", run_dir / "feature_map.png"))
    return write_html(run_dir / "report.html", f"transferkit run: {summary.get('name') or run_dir.name}",
                      "Test metrics on held-out data; curves per epoch from metrics.jsonl.", tables, images)
