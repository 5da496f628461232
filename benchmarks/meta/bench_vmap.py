"""Is the vmapped meta-batch faster than a Python loop over the same tasks? (issue 14, must-show 4)

One outer step of MAML — :func:`transferkit.meta.functional.maml_loss` and its ``backward`` — on the
same meta-batch of real Omniglot episodes (Vinyals split, 5-way 1-shot, 1 query per class as in MAML's
Omniglot training), run with ``vectorize=True`` (``torch.func.vmap`` over the tasks) and
``vectorize=False`` (a Python loop over them, the same values), in the same process, alternating.
Each time is the fastest of ``--repeats`` after one warm-up. Cases: the four-block conv net
(``conv4``) and MAML's fully connected Omniglot net (``mlp`` 784-256-128-64-64); first and second
order (second order for the MLP only: through batch norm it always loops, since vmap's batch-norm
backward rule is wrong for second derivatives); 1 and 5 inner steps; torch at 1 and 2 threads.

Results: benchmarks/results/meta_vmap.csv (one row per case: seconds looped, seconds vmapped, ratio).

Run:  PYTHONPATH=src python benchmarks/meta/bench_vmap.py
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from transferkit.backbones import create_backbone
from transferkit.config import MetaConfig, load_config
from transferkit.heads import create_head
from transferkit.meta.functional import maml_loss
from transferkit.meta.learners import batch_statistics_only
from transferkit.model import TransferModel
from transferkit.runs.meta import _samplers, load_meta_data

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "benchmarks/results/meta_vmap.csv"
BACKBONES = {"conv4": {"in_channels": 1, "image_size": 28}, "mlp": {"in_features": 784, "hidden": (256, 128, 64, 64)}}


def fastest(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meta-batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    cfg = load_config(ROOT / "examples/meta/omniglot_fomaml.yaml", ["data.train_q_queries=1"], schema=MetaConfig)
    ds, splits = load_meta_data(cfg.data)
    b = _samplers(cfg, ds, splits)["train"].batch(0, args.meta_batch)
    rows = []
    for threads in map(int, args.threads.split(",")):
        torch.set_num_threads(threads)
        for name, kw in BACKBONES.items():
            torch.manual_seed(0)
            backbone = create_backbone(name, **kw)
            model = batch_statistics_only(TransferModel(backbone, create_head("linear", backbone.num_features, 5)))
            params = dict(model.named_parameters())
            for first_order in (True, False) if name == "mlp" else (True,):
                for steps in (1, 5):
                    def step(vectorize):
                        return lambda: maml_loss(model, params, b.support_x, b.support_y, b.query_x, b.query_y,
                                                 steps, 0.4, first_order, vectorize=vectorize).backward()
                    looped, vmapped = fastest(step(False), args.repeats), fastest(step(True), args.repeats)
                    row = {"backbone": name, "order": "first" if first_order else "second", "inner_steps": steps,
                           "threads": threads, "tasks": args.meta_batch, "loop_s": round(looped, 4),
                           "vmap_s": round(vmapped, 4), "speedup": round(looped / vmapped, 2)}
                    print(row, flush=True)
                    rows.append(row)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
