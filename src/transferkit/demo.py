"""The main job: pretrain on MNIST, transfer to USPS from k labelled images per class, compare strategies."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from transferkit.api import prepare_run_dir, train
from transferkit.compare import compare
from transferkit.report import read_metrics

STRATEGIES = ("scratch", "feature_extraction", "full", "two_stage")


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


def target_config(s: DemoSettings, weights: Path) -> dict:
    """USPS with k labels per class; every other USPS image is the test set; no validation split."""
    return {"data": {"dataset": "mnist_usps:usps", "shots": s.shots, "val_fraction": 0.0, "test_fraction": "rest"},
            "model": {"backbone": "small_cnn", "backbone_args": {"in_channels": 1}, "weights": str(weights),
                      "num_classes": 10},
            "train": {"epochs": s.target_epochs, "batch_size": 32, "lr": s.lr}}


def run_demo(out: str | Path = "runs/demo", overwrite: bool = False, settings: DemoSettings | None = None,
             strategies: tuple[str, ...] = STRATEGIES, console: Console | None = None) -> list[dict]:
    """Pretrain the source, then ``compare`` the strategies on USPS; return one row per strategy."""
    s = settings or DemoSettings()
    console = console or Console()
    out = Path(out)
    prepare_run_dir(out, overwrite, resume=False)
    console.print(f"[bold]Source[/]: small CNN on MNIST (2,000 images, 16x16), {s.source_epochs} epochs")
    src = train(source_config(s), out=out / "source")
    console.print(f"  source validation accuracy {src.history[-1].get('val/accuracy', float('nan')):.3f}")
    return compare(target_config(s, out / "source" / "model.safetensors"), list(strategies), [s.shots], s.seeds, out,
                   console=console, new_dir=False, extra_curves={"source (MNIST)": read_metrics(out / "source")},
                   title=f"MNIST -> USPS, {s.shots} labelled target images per class, {s.seeds} seeds",
                   intro=f"A small CNN pretrained on 2,000 MNIST digits is transferred to USPS using {s.shots} "
                         f"labelled images per class; the other USPS images are the test set. Each row is the mean ± "
                         f"standard deviation over {s.seeds} seeds (k-shot draw and initialisation).")
