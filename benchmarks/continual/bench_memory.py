"""Memory of replay: ER(5120) on Split-MNIST (the protocol of protocols.py), with the buffer
storing MNIST's 8-bit images as uint8 (the default) and as float32. Each run is its own process,
so the peak resident memory (ru_maxrss) is that run's alone.

    TRANSFERKIT_DATA=../shared/data .venv/bin/python benchmarks/continual/bench_memory.py
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def one(compact: bool) -> dict:
    from protocols import mlp, mnist, settings, stream

    from transferkit.continual import create_continual_strategy
    from transferkit.runs.learner import train_stream

    train, test = mnist()
    s = stream("split", train, test)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    strategy = create_continual_strategy("er", size=5120, batch_size=10, compact=compact)
    res = train_stream(mlp(0), strategy, s, settings("split", 0.1, 0), progress=False)
    return {"compact": compact, "buffer_mib": round(res.per_task[-1]["buffer_bytes"] / 2**20, 2),
            "x_dtype": str(strategy.buffer.x.dtype), "peak_rss_mib_before_training": round(before, 1),
            "peak_rss_mib": round(max(t["peak_memory_mb"] for t in res.per_task), 1),
            "class_il_accuracy": round(100 * res.summary()["class_il"]["average_accuracy"], 2),
            "seconds": round(time.perf_counter() - t0, 1)}


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("compact", "float"):
        print(json.dumps(one(sys.argv[1] == "compact")))
    else:
        rows = [json.loads(subprocess.run([sys.executable, __file__, mode], capture_output=True, text=True,
                                          check=True).stdout.strip().splitlines()[-1]) for mode in ("compact", "float")]
        print("| buffer storage | x dtype | buffer MiB | peak RSS MiB (before training) | peak RSS MiB | class-IL % | s |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {'uint8 (compact)' if r['compact'] else 'float32'} | {r['x_dtype']} | {r['buffer_mib']} | "
                  f"{r['peak_rss_mib_before_training']} | {r['peak_rss_mib']} | {r['class_il_accuracy']} | {r['seconds']} |")
