"""Multi-task benchmarks: every weighter x 3 seeds against single-task training, delta-m %.

    python benchmarks/multitask/bench_mtl.py [office_caltech amazon_minilm multimnist]
    python benchmarks/multitask/bench_mtl.py --tables   # the tables again, from runs/bench/*/results.json

Runs ``examples/multitask/<name>.yaml`` through ``run_multitask`` (the same code as
``transferkit multitask``), writes ``benchmarks/results/multitask_<name>.csv`` and prints a
Markdown table per benchmark for BENCHMARKS.md. Needs $TRANSFERKIT_DATA (../shared/data).
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

from transferkit.runs.multitask import run_multitask, summarise

ROOT = Path(__file__).resolve().parents[2]


def table(name: str, summary: dict) -> list[list[str]]:
    tasks = list(summary["single_task"]["tasks"])
    rows = []
    for w, e in summary.items():
        cells = [f"{100 * e['tasks'][t]['mean']:.1f}" + (f" ± {100 * e['tasks'][t]['std']:.1f}" if "std" in e["tasks"][t] else "")
                 for t in tasks]
        dm = f"{e['delta_m']:+.2f} ± {e['delta_m_std']:.2f}" if "delta_m" in e else "0"
        rows.append([w, *cells, dm, f"{e.get('seconds', 0):.1f}"])
    return [["weighter", *[f"{t} %" for t in tasks], "Δm %", "s per seed"], *rows]


def main(names: list[str], tables_only: bool = False) -> None:
    for name in names:
        t0 = time.perf_counter()
        run_dir = ROOT / "runs" / "bench" / name
        if tables_only:
            results = json.loads((run_dir / "results.json").read_text())
            summary = summarise(results, [t.split("/")[0] for t in results[0]["test"] if t.endswith("/accuracy")])
        else:
            summary = run_multitask(ROOT / "examples" / "multitask" / f"{name}.yaml", run_dir, overwrite=True,
                                    progress=False)
        rows = table(name, summary)
        out = ROOT / "benchmarks" / "results" / f"multitask_{name}.csv"
        with open(out, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)
        best = max((w for w in summary if "delta_m" in summary[w]), key=lambda w: summary[w]["delta_m"])
        print(f"\n### {name} ({time.perf_counter() - t0:.0f} s; best: {best}, Δm {summary[best]['delta_m']:+.2f} %)\n")
        print("| " + " | ".join(rows[0]) + " |\n|" + " --- |" * len(rows[0]))
        for r in rows[1:]:
            print("| " + " | ".join(r) + " |")
        sys.stdout.flush()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--tables"]
    main(args or ["office_caltech", "amazon_minilm", "multimnist"], tables_only="--tables" in sys.argv)
