"""A federated run's report: report.md (what was compared, the bounds, bytes per round) and accuracy.png."""

from __future__ import annotations

from pathlib import Path


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


def accuracy_plot(path: Path, rounds: list[dict], summary: dict) -> None:
    """Global test accuracy per round against the centralised and mean local-only accuracies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["round"] for r in rounds], [100 * r["test/accuracy"] for r in rounds], marker="o", label="federated (global)")
    ax.axhline(100 * summary["centralised/accuracy"], color="green", ls="--", label="centralised")
    ax.axhline(100 * summary["local_only/mean_accuracy"], color="red", ls=":", label="local-only (mean)")
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def federated_report(out: Path, summary: dict, rounds: list[dict]) -> Path:
    """Write ``report.md`` (and ``accuracy.png`` when there are rounds) into ``out``; returns the report's path."""
    s = summary
    dp = s["dp"]
    mu = f" (mu = {s['proximal_mu']})" if s["aggregation"] == "fedprox" else ""
    lines = [
        f"# Federated run{': ' + s['name'] if s.get('name') else ''}",
        "",
        f"{s['clients']} clients, label skew Dirichlet(alpha = {s['alpha']}) on `{s['dataset']}` (mean total-variation "
        f"distance to the pooled labels {s['label_skew']:.3f}); strategy `{s['strategy']}`, aggregation "
        f"{s['aggregation']}{mu}, "
        f"{s['rounds']} rounds of {s['local_epochs']} local epoch(s); DP: "
        + (f"{dp.get('side', 'server')}-side fixed clipping, clipping norm {dp['clipping_norm']}, noise multiplier "
           f"{dp['noise_multiplier']}: the global models are client-level ({dp['epsilon']:.2f}, {dp['delta']:g})-DP "
           f"after {dp['rounds']} rounds for a client's update zeroed out ({dp['epsilon_replace_one']:.2f} for one "
           f"replaced; epsilon {dp['epsilon_is']}; Gaussian differential privacy, Dong, Roth & Su 2022). Per-client "
           "label counts and local accuracies below are not protected."
           if dp else "off."),
        "",
        "| model | global test accuracy |",
        "| --- | --- |",
        f"| federated, after round {s['rounds']} | {_pct(s['test/accuracy'])} |",
        f"| centralised (union of the clients' rows, {s['baseline_epochs']} epochs) | {_pct(s['centralised/accuracy'])} |",
        f"| local-only, mean of {s['clients']} clients ({s['baseline_epochs']} epochs each) | "
        f"{_pct(s['local_only/mean_accuracy'])} |",
        f"| source backbone with the untrained head (round 0) | {_pct(s['initial/test/accuracy'])} |",
        "",
        f"Local-only accuracies: {', '.join(_pct(a) for a in s['local_only/accuracy'])}.",
        "",
        f"Each client sends {s['exchanged_bytes']:,} bytes per round ({len(s['trainable_tensors'])} tensors, "
        f"{s['trainable_parameters']:,} parameters) against {s['model_bytes']:,} bytes for the whole model: "
        f"{100 * s['bytes_fraction']:.3f} %.",
        "",
        "| round | global accuracy | clients' accuracy on their local test rows |",
        "| --- | --- | --- |",
    ]
    for r in rounds:
        local = ", ".join(_pct(c.get("local_accuracy")) for c in r["clients"])
        lines.append(f"| {r['round']} | {_pct(r['test/accuracy'])} | {local} |")
    if rounds:
        accuracy_plot(out / "accuracy.png", rounds, s)
        lines += ["", "![accuracy per round](accuracy.png)"]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
