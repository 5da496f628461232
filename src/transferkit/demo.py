"""The main job: pretrain on MNIST, transfer to USPS from k labelled images per class, compare strategies."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from transferkit.api import prepare_run_dir, train
from transferkit.metrics import mean_std
from transferkit.report import plot_bars, plot_learning_curves, read_metrics, write_html

STRATEGIES = ("scratch", "feature_extraction", "full", "two_stage")
LABELS = {"scratch": "from scratch", "feature_extraction": "feature extraction (cached)",
          "full": "full fine-tuning", "two_stage": "two-stage fine-tuning"}


@dataclass
class DemoSettings:
    shots: int = 10  # labelled USPS images per class
    seeds: int = 3  # repetitions (k-shot draw and initialisation)
    source_epochs: int = 15  # MNIST pretraining epochs
    target_epochs: int = 40  # USPS epochs per strategy
    lr: float = 1e-3


def source_config(s: DemoSettings) -> dict:
    return {"name": "source-mnist",
            "data": {"dataset": "mnist_usps:mnist", "val_fraction": 0.1, "test_fraction": 0.0},
            "model": {"backbone": "small_cnn", "backbone_args": {"in_channels": 1}},
            "strategy": {"name": "scratch", "args": {}},
            "train": {"epochs": s.source_epochs, "batch_size": 64, "lr": s.lr, "seed": 0}}


def target_config(s: DemoSettings, strategy: str, seed: int, weights: Path) -> dict:
    return {"name": f"{strategy}-seed{seed}",
            "data": {"dataset": "mnist_usps:usps", "shots": s.shots, "val_fraction": 0.0, "test_fraction": "rest",
                     "seed": seed},
            "model": {"backbone": "small_cnn", "backbone_args": {"in_channels": 1}, "weights": str(weights),
                      "num_classes": 10},
            "strategy": {"name": strategy, "args": {}},
            "train": {"epochs": s.target_epochs, "batch_size": 32, "lr": s.lr, "seed": seed}}


def run_demo(out: str | Path = "runs/demo", overwrite: bool = False, settings: DemoSettings | None = None,
             strategies: tuple[str, ...] = STRATEGIES, console: Console | None = None) -> list[dict]:
    """Run the comparison; return one row per strategy (mean/std of test accuracy over seeds)."""
    s = settings or DemoSettings()
    console = console or Console()
    out = Path(out)
    prepare_run_dir(out, overwrite, resume=False)
    console.print(f"[bold]Source[/]: small CNN on MNIST (2,000 images, 16x16), {s.source_epochs} epochs")
    src = train(source_config(s), out=out / "source")
    console.print(f"  source validation accuracy {src.history[-1].get('val/accuracy', float('nan')):.3f}")
    weights = out / "source" / "model.safetensors"
    results: dict[str, list[dict]] = {name: [] for name in strategies}
    for name in strategies:
        for seed in range(s.seeds):
            console.print(f"[bold]Target[/]: USPS, {s.shots} labels/class, {LABELS.get(name, name)}, seed {seed}")
            res = train(target_config(s, name, seed, weights), out=out / f"{name}-seed{seed}")
            results[name].append(res.metrics | {"run": str(res.run_dir)})
    rows = summarise(results)
    (out / "results.json").write_text(json.dumps({"settings": s.__dict__, "rows": rows}, indent=2))
    print_table(rows, s, console)
    write_demo_report(out, rows, results, s)
    console.print(f"Report: {out / 'report.html'}")
    return rows


def summarise(results: dict[str, list[dict]]) -> list[dict]:
    rows = []
    for name, runs in results.items():
        m, sd = mean_std([100 * r["test/accuracy"] for r in runs])
        rows.append({"strategy": name, "accuracy_mean": m, "accuracy_std": sd,
                     "trainable_parameters": runs[0]["trainable_parameters"],
                     "train_seconds": sum(r["train_seconds"] for r in runs) / len(runs),
                     "test_examples": runs[0]["test_examples"], "seeds": len(runs)})
    return rows


def print_table(rows: list[dict], s: DemoSettings, console: Console) -> None:
    table = Table(title=f"MNIST -> USPS, {s.shots} labelled target images per class, {s.seeds} seeds")
    for col in ("strategy", "USPS test accuracy (%)", "trainable params", "train seconds"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for r in rows:
        table.add_row(LABELS.get(r["strategy"], r["strategy"]), f"{r['accuracy_mean']:.1f} ± {r['accuracy_std']:.1f}",
                      f"{r['trainable_parameters']:,}", f"{r['train_seconds']:.1f}")
    console.print(table)


def write_demo_report(out: Path, rows: list[dict], results: dict[str, list[dict]], s: DemoSettings) -> Path:
    bars = plot_bars([LABELS.get(r["strategy"], r["strategy"]).replace(" ", "\n", 1) for r in rows], [r["accuracy_mean"] for r in rows],
                     [r["accuracy_std"] for r in rows], out / "accuracy_by_strategy.png", "USPS test accuracy (%)",
                     f"MNIST -> USPS, {s.shots} labels/class (mean ± std, {s.seeds} seeds)")
    curves = {LABELS.get(n, n): read_metrics(Path(runs[0]["run"])) for n, runs in results.items()}
    curves["source (MNIST)"] = read_metrics(out / "source")
    lc = plot_learning_curves(curves, out / "learning_curves.png")
    table = [[LABELS.get(r["strategy"], r["strategy"]), f"{r['accuracy_mean']:.1f} ± {r['accuracy_std']:.1f}",
              f"{r['trainable_parameters']:,}", f"{r['train_seconds']:.1f}"] for r in rows]
    return write_html(out / "report.html", "transferkit demo: MNIST -> USPS",
                      f"A small CNN pretrained on 2,000 MNIST digits is transferred to USPS using {s.shots} labelled "
                      f"images per class; the other USPS images are the test set. Each row is the mean ± standard "
                      f"deviation over {s.seeds} seeds (k-shot draw and initialisation).",
                      [("Results", ["strategy", "USPS test accuracy (%)", "trainable parameters", "train seconds"], table)],
                      [("Accuracy by strategy", bars), ("Learning curves (seed 0)", lc)], details=s.__dict__)
