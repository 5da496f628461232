"""Training throughput in one process against two (`transferkit train --processes 2`, DDP over gloo).

The same run (small_cnn on 10,000 MNIST training digits from ../shared/data/mnist, full training,
batch 128 as the global batch, 3 epochs, no validation) three ways, each through the CLI as a user
would: one process on one thread, one process on two threads (the same cores as two processes), and
two processes on one thread each. Throughput is training rows per second of the trainer's own
`train_seconds` (start-up and the launch of the processes excluded); the ratios are to the one-process
runs of the same invocation. The three alternate over `--reps` repetitions and the best time of each
is kept.

    TRANSFERKIT_DATA=../shared/data python benchmarks/bench_ddp.py [--reps 2] [--out benchmarks/results/ddp_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

CONFIG = {"name": "bench-ddp",
          "data": {"dataset": "mnist:train", "label_fraction": 1 / 6, "val_fraction": 0.0, "test_fraction": 0.0,
                   "seed": 0},
          "model": {"backbone": "small_cnn", "backbone_args": {"in_channels": 1}},
          "strategy": {"name": "full"},
          "train": {"epochs": 3, "batch_size": 128, "lr": 0.001, "device": "cpu"}}
MODES = {"1 process, 1 thread": (1, 1), "1 process, 2 threads": (1, 2), "2 processes, 1 thread each": (2, 1)}


def run(config: Path, out: Path, processes: int, threads: int) -> dict:
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "transferkit", "train", str(config), "--out", str(out), "--overwrite",
           "--processes", str(processes)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return json.loads((out / "summary.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/ddp_cpu.json"))
    args = ap.parse_args()
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(yaml.safe_dump(CONFIG))
        for _ in range(args.reps):
            for mode, (processes, threads) in MODES.items():
                s = run(config, Path(tmp) / "run", processes, threads)
                rows = s["train_examples"] * s["epochs_run"]
                best[mode] = max(best.get(mode, 0.0), rows / s["train_seconds"])
                print(f"{mode}: {rows / s['train_seconds']:.0f} rows/s", flush=True)
    base1, base2 = best["1 process, 1 thread"], best["1 process, 2 threads"]
    result = {"rows_per_second": {k: round(v, 1) for k, v in best.items()},
              "ratio_2_processes_to_1_process_1_thread": round(best["2 processes, 1 thread each"] / base1, 3),
              "ratio_2_processes_to_1_process_2_threads": round(best["2 processes, 1 thread each"] / base2, 3),
              "config": CONFIG, "reps": args.reps, "cpus": os.cpu_count()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
