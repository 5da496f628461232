"""The report of a meta-learning run: test accuracy with its 95 % CI, meta-validation accuracy over training."""

from __future__ import annotations

from pathlib import Path

from transferkit.report import plot_curves, read_metrics, write_html


def meta_report(run_dir: Path, results: dict) -> Path:
    """``report.html`` (+ ``val_accuracy.png``) from ``results.json``'s dict and ``metrics.jsonl``."""
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    images = []
    if rows:
        curve = [(r["iteration"], 100 * r["val/accuracy"], 100 * r["val/ci95"]) for r in rows]
        images.append(("Meta-validation accuracy (%, ± 95 % CI) over meta-training iterations",
                       plot_curves({results["method"]: curve}, run_dir / "val_accuracy.png", "iteration",
                                   "accuracy (%)")))
    table = [[results["method"], f"{t['n_way']}-way {t['k_shot']}-shot", f"{100 * t['accuracy']:.2f} ± {100 * t['ci95']:.2f}",
              t["episodes"], results["iterations"], f"{results['train_seconds']:.1f}", f"{t['seconds']:.1f}"]
             for t in results["tests"]]
    headers = ["method", "episodes", "test accuracy (%)", "test episodes", "iterations", "train s", "test s"]
    return write_html(run_dir / "report.html", f"transferkit meta: {results['name']}",
                      "Test accuracy on episodes of the meta-test classes (mean ± 1.96 s / sqrt(n), s the sample std); "
                      "curves from metrics.jsonl.", [("Test", headers, table)], images, details=results)
