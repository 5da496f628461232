"""Split-MNIST (class-IL, task-IL) and Permuted-MNIST (domain-IL) for SGD, oEWC, SI, LwF, ER,
A-GEM, DER and DER++ (buffers 200 and 500), mean +- std over seeds, beside the published figures.

    TRANSFERKIT_DATA=../shared/data .venv/bin/python benchmarks/continual/bench_mammoth.py \
        --out benchmarks/results/continual_mnist.csv

Writes one CSV row per (protocol, strategy, buffer, seed) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from protocols import GRID, mlp, mnist, settings, stream, strategy_args  # noqa: E402

from transferkit.continual import create_continual_strategy  # noqa: E402
from transferkit.runs.learner import train_stream  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocols", default="split,permuted")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated strategy names")
    ap.add_argument("--out", default="benchmarks/results/continual_mnist.csv")
    a = ap.parse_args()
    train, test = mnist()
    rows = []
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for protocol in a.protocols.split(","):
        s = stream(protocol, train, test)
        for (name, buffer), (lr, kwargs) in GRID[protocol].items():
            if a.only and name not in a.only.split(","):
                continue
            for seed in range(a.seeds):
                t0 = time.perf_counter()
                res = train_stream(mlp(seed), create_continual_strategy(name, **strategy_args(name, buffer, kwargs)), s,
                                   settings(protocol, lr, seed), progress=False)
                summ = res.summary()
                row = {"protocol": protocol, "strategy": name, "buffer": buffer or "", "seed": seed,
                       "seconds": round(time.perf_counter() - t0, 1)}
                for setting, m in summ.items():
                    row |= {f"{setting}/{k}": round(100 * v, 2) for k, v in m.items()}
                rows.append(row)
                print(row, flush=True)
                with open(out, "w", newline="") as f:
                    keys = sorted({k for r in rows for k in r}, key=lambda k: (k.count("/"), k))
                    w = csv.DictWriter(f, fieldnames=keys)
                    w.writeheader()
                    w.writerows(rows)
    print(table(rows))


def table(rows: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["protocol"], r["strategy"], r["buffer"]), []).append(r)
    lines = ["| protocol | strategy | buffer | setting | accuracy | forgetting | seconds/run |", "|---|---|---|---|---|---|---|"]
    for (p, s, b), rs in groups.items():
        for setting in ("class_il", "task_il", "domain_il"):
            acc = [r[f"{setting}/average_accuracy"] for r in rs if f"{setting}/average_accuracy" in r]
            if acc:
                fg = [r[f"{setting}/forgetting"] for r in rs]
                sec = np.mean([r["seconds"] for r in rs])
                lines.append(f"| {p} | {s} | {b or '-'} | {setting} | {np.mean(acc):.2f} ± {np.std(acc):.2f} | "
                             f"{np.mean(fg):.2f} | {sec:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
