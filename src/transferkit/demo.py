"""The main job: what transfer buys on USPS digits, from 0 to 10 labels per class.

A small CNN is trained on 2,000 MNIST digits (the source). On USPS (the target), with 0 labels the
source model as it is (source-only) is set against unsupervised domain adaptation from it (the
unlabelled USPS images and the MNIST labels); with 1, 3 and 10 labels per class, training from scratch
against feature extraction and fine-tuning of the source model. Every image is standardised (mean 0,
std 1 per image). One table, one data-efficiency plot, one report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from transferkit.api import prepare_run_dir, train
from transferkit.compare import SOURCE_ONLY, compare, label, print_table
from transferkit.report import plot_curves, write_html

STRATEGIES = ("scratch", "feature_extraction", "full")
ADAPT = ("mcc", "dann")  # unsupervised domain-adaptation methods tried at 0 labels
ADAPTED = "full_adapted"  # fine-tuning that starts from the best adapted model (seed 0) instead of the source
PREPROCESS = "standardize"  # per-image standardisation, the same for every run


@dataclass
class DemoSettings:
    shots: tuple[int, ...] = (1, 3, 10)  # labelled USPS images per class
    seeds: int = 3  # repetitions (k-shot draw and initialisation)
    source_epochs: int = 15  # MNIST pretraining epochs
    target_epochs: int = 40  # USPS epochs per few-shot strategy
    adapt_epochs: int = 5  # epochs of domain adaptation from the source model (no USPS label)
    lr: float = 1e-3


def source_config(s: DemoSettings) -> dict:
    return {"name": "source-mnist",
            "data": {"dataset": "mnist_usps:mnist", "val_fraction": 0.1, "test_fraction": 0.0, "preprocess": PREPROCESS},
            "model": {"backbone": "small_cnn", "backbone_args": {"in_channels": 1}},
            "strategy": {"name": "scratch", "args": {}},
            "train": {"epochs": s.source_epochs, "batch_size": 64, "lr": s.lr, "seed": 0}}


def target_config(s: DemoSettings, weights: Path) -> dict:
    """USPS with k labels per class; every other USPS image is the test set; no validation split."""
    return {"data": {"dataset": "mnist_usps:usps", "val_fraction": 0.0, "test_fraction": "rest",
                     "preprocess": PREPROCESS},
            "model": {"backbone": "small_cnn", "backbone_args": {"in_channels": 1}, "weights": str(weights),
                      "num_classes": 10},
            "train": {"epochs": s.target_epochs, "batch_size": 32, "lr": s.lr}}


def few_shot_variants(s: DemoSettings) -> dict:
    """The demo's few-shot recipe as ``compare`` variants: the transfer strategies start from the source
    model's own head (same labels) and fine-tuning runs at a tenth of the rate, the usual recipe; from scratch
    keeps the base rate it needs."""
    keep = {"model": {"source_head": True}}
    return {"feature_extraction": keep, "full": keep | {"train": {"lr": s.lr / 10}}}


def adapt_config(s: DemoSettings, weights: Path) -> dict:
    """0 USPS labels: from the source model, the MNIST labels plus the unlabelled USPS images (all of
    them, the transductive protocol); the test set is every USPS image."""
    cfg = target_config(s, weights)
    cfg["data"] |= {"source": "mnist_usps:mnist", "unlabelled": "mnist_usps:usps"}
    cfg["train"] |= {"epochs": s.adapt_epochs, "batch_size": 64}
    return cfg


def run_demo(out: str | Path = "runs/demo", overwrite: bool = False, settings: DemoSettings | None = None,
             strategies: tuple[str, ...] = STRATEGIES, adapt: tuple[str, ...] = ADAPT,
             console: Console | None = None) -> list[dict]:
    """Pretrain the source; compare source-only with domain adaptation at 0 labels and the few-shot
    strategies at each label budget; print one table and write ``report.html``. Returns the rows."""
    s = settings or DemoSettings()
    console = console or Console()
    out = Path(out)
    prepare_run_dir(out, overwrite, resume=False)
    console.print(f"[bold]Source[/]: small CNN on MNIST (2,000 images, 16x16, standardised), {s.source_epochs} epochs")
    src = train(source_config(s), out=out / "source")
    console.print(f"  source validation accuracy {src.history[-1].get('val/accuracy', float('nan')):.3f}")
    weights = out / "source" / "model.safetensors"
    rows, few_cfg, names = [], target_config(s, weights), list(strategies)
    few_cfg["compare"] = {"variants": {k: v for k, v in few_shot_variants(s).items() if k in names}}
    if adapt:
        console.print("[bold]0 labels[/]: the source model as it is, and adapted with the unlabelled USPS images")
        rows += compare(adapt_config(s, weights), list(adapt), [0], s.seeds, out / "unlabelled", console=console,
                        show_table=False)
        best = max((r for r in rows if r["strategy"] in adapt), key=lambda r: r["accuracy_mean"])["strategy"]
        adapted = out / "unlabelled" / best / "k0" / "seed0" / "model.safetensors"
        few_cfg["compare"]["variants"][ADAPTED] = {"strategy": "full", "model": {"weights": str(adapted), "source_head": True},
                                                   "train": {"lr": s.lr / 10}}
        names.append(ADAPTED)
    if s.shots:
        console.print(f"[bold]{', '.join(map(str, s.shots))} labels per class[/]: " + ", ".join(map(label, names)))
        few = compare(few_cfg, names, list(s.shots), s.seeds, out / "few_shot", console=console, show_table=False)
        rows += [r for r in few if r["strategy"] != SOURCE_ONLY or not adapt]  # source-only is the 0-label row
    title = f"MNIST -> USPS: what transfer buys, {s.seeds} seeds"
    print_table(rows, console, title)
    write_demo_report(out, rows, s, title)
    console.print(f"Report: {out / 'report.html'}")
    return rows


def write_demo_report(out: Path, rows: list[dict], s: DemoSettings, title: str) -> Path:
    (out / "results.json").write_text(json.dumps({"rows": rows}, indent=2))
    curves: dict[str, list[tuple]] = {}
    for r in rows:
        curves.setdefault(label(r["strategy"]), []).append((r["shots"], r["accuracy_mean"], r["accuracy_std"]))
    plot = plot_curves(curves, out / "data_efficiency.png", "labelled USPS images per class", "test accuracy (%)")
    table = [[label(r["strategy"]), r["shots"], f"{r['accuracy_mean']:.1f} ± {r['accuracy_std']:.1f}",
              "" if r["vs_baseline"] != r["vs_baseline"] or r["strategy"] in ("scratch", SOURCE_ONLY)
              else f"{r['vs_baseline']:+.1f} vs {label(r['baseline'])}", "yes" if r["negative_transfer"] else ""]
             for r in rows]
    intro = (f"A small CNN trained on 2,000 MNIST digits is transferred to USPS. At 0 labels: the source model as it "
             f"is against unsupervised domain adaptation ({s.adapt_epochs} epochs from the source model with the "
             "MNIST labels and the unlabelled USPS images). With k labels per class: training from scratch against "
             "feature extraction and fine-tuning of the source model; the other USPS images are the test set. Every "
             f"image is standardised. Mean ± standard deviation over {s.seeds} seeds. The runs and their own reports "
             "are in unlabelled/ and few_shot/.")
    return write_html(out / "report.html", title, intro,
                      [("Results", ["strategy", "labels/class", "test accuracy (%)", "vs best baseline (points)",
                                    "negative transfer"], table)], [("Data efficiency", plot)])
