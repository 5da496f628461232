"""Meta-learning on Omniglot against the published figures (issue 14, must-show 1).

Each method is meta-trained once with ``transferkit.run_meta`` on the Vinyals split of
``../shared/data/omniglot/omniglot.npz`` (28x28, rotation classes) with the budget below, on one CPU
thread, and tested on 600 episodes of the meta-test characters (15 queries per class) at every
setting its head allows (``train.test_ways`` / ``train.test_shots``): ProtoNets and the fine-tuning
baseline at 5- and 20-way, 1- and 5-shot from one model each; the inner-loop methods (an n-way head)
at the way they were trained (5-way; 20-way for the ``*-20way`` runs), 1- and 5-shot. The budgets are this CPU's, far below the papers' (MAML: 60,000 meta-batches of
32 tasks; ProtoNets: about 20,000 episodes); the curves in each run's metrics.jsonl say where each stood.

Results: benchmarks/results/meta_omniglot.jsonl (one row per method and test setting: accuracy, CI,
iterations, meta-training seconds); resumable (finished runs are read back from their directories).

Run:  PYTHONPATH=src python benchmarks/meta/bench_omniglot.py --work /work/bench_out/meta_omniglot [--only protonet]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "benchmarks/results/meta_omniglot.jsonl"
PROTO, FOMAML = ROOT / "examples/meta/omniglot_protonet.yaml", ROOT / "examples/meta/omniglot_fomaml.yaml"
EVAL = ["train.eval_every=100", "train.val_episodes=100", "train.test_episodes=600"]
INNER = ["data.train_q_queries=1", "method.meta_batch=16", "method.inner_steps=5", "method.eval_inner_steps=10",
         "method.vectorize=false", "train.test_shots=[1,5]"]
RUNS = {  # name: (config, overrides)
    "protonet": (PROTO, ["train.iterations=1000", "train.test_ways=[5,20]", "train.test_shots=[1,5]"]),
    "finetune": (PROTO, ["method.name=finetune", "method.batch_size=64", "train.iterations=3000",
                         "train.test_ways=[5,20]", "train.test_shots=[1,5]", "train.eval_every=500"]),
    "fomaml": (FOMAML, INNER + ["train.iterations=600"]),
    "anil": (FOMAML, INNER + ["method.name=anil", "train.iterations=600"]),
    "reptile": (FOMAML, INNER + ["method.name=reptile", "train.iterations=300"]),
    "maml": (FOMAML, INNER + ["method.name=maml", "train.iterations=300"]),
    # 20-way: 4 times the images per episode, so 8 tasks per update and fewer updates
    # FOMAML at 20-way with MAML's recipe fell from 63.5 to 42.8 % meta-validation accuracy between updates
    # 100 and 200: the zeroing trick (every task's head starts at zero) as in the make-test recipe
    "fomaml-20way": (FOMAML, INNER + ["data.n_way=20", "method.meta_batch=8", "method.zero_head=true",
                                      "train.iterations=200"]),
    "anil-20way": (FOMAML, INNER + ["data.n_way=20", "method.meta_batch=8", "method.name=anil", "train.iterations=300"]),
    "reptile-20way": (FOMAML, INNER + ["data.n_way=20", "method.meta_batch=8", "method.name=reptile",
                                       "train.iterations=200"]),
    "maml-20way": (FOMAML, INNER + ["data.n_way=20", "method.meta_batch=8", "method.name=maml", "train.iterations=100"]),
}
# Published test accuracies (%), 5-way 1-shot, 5-way 5-shot, 20-way 1-shot, 20-way 5-shot.
PUBLISHED = {
    "maml": ("Finn et al., 2017, Table 1", {(5, 1): 98.7, (5, 5): 99.9, (20, 1): 95.8, (20, 5): 98.9}),
    "fomaml": ("Finn et al., 2017, Table 1 (first order)", {(5, 1): 98.3, (5, 5): 99.2, (20, 1): 89.4, (20, 5): 97.9}),
    "anil": ("", {}),  # Raghu et al. and Nichol et al. report Omniglot figures too; no stored copy was found to quote
    "reptile": ("", {}),
    "protonet": ("Snell et al., 2017, Table 1", {(5, 1): 98.8, (5, 5): 99.7, (20, 1): 96.0, (20, 5): 98.9}),
    "finetune": ("", {}),
}


def table(rows: list[dict]) -> str:
    """The markdown table of BENCHMARKS.md: a row per method and setting, the published figure beside."""
    lines = ["| method | setting | test accuracy, 600 episodes (%) | published (%) | gap (points) | iterations | meta-training s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        pub, gap = r["published"], "" if r["published"] is None else f"{r['accuracy'] - r['published']:+.1f}"
        lines.append(f"| {r['method']} | {r['n_way']}-way {r['k_shot']}-shot | {r['accuracy']:.1f} ± {r['ci95']:.1f} | "
                     f"{'—' if pub is None else pub} | {gap} | {r['iterations']} | {r['train_seconds']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/bench_meta"))
    ap.add_argument("--only", default=",".join(RUNS), help="comma-separated names of RUNS")
    ap.add_argument("--table", action="store_true", help="print the results as BENCHMARKS.md's table and stop")
    args = ap.parse_args()
    if args.table:
        print(table([json.loads(line) for line in OUT.read_text().splitlines()]))
        return
    torch.set_num_threads(1)
    import transferkit as tk

    done = {(r["method"], r["n_way"], r["k_shot"]) for r in
            (json.loads(line) for line in OUT.read_text().splitlines())} if OUT.exists() else set()
    for name in args.only.split(","):
        config, overrides = RUNS[name]
        out = args.work / name
        ds = f"data.dataset={ROOT.parent / 'shared/data/omniglot/omniglot.npz'}"
        res = tk.run_meta(config, out, resume=out.exists(), progress=False, overrides=[ds] + EVAL + overrides,
                          on_eval=lambda r: print(name, r, flush=True))
        method = name.split("-")[0]
        source, published = PUBLISHED[method]
        for t in res["tests"]:
            if (method, t["n_way"], t["k_shot"]) in done:
                continue
            row = {"method": method, "n_way": t["n_way"], "k_shot": t["k_shot"],
                   "accuracy": round(100 * t["accuracy"], 2), "ci95": round(100 * t["ci95"], 2),
                   "episodes": t["episodes"], "iterations": res["iterations"],
                   "train_seconds": round(res["train_seconds"]), "test_seconds": round(t["seconds"]),
                   "published": published.get((t["n_way"], t["k_shot"])), "published_source": source,
                   "overrides": overrides}
            print(row, flush=True)
            OUT.parent.mkdir(parents=True, exist_ok=True)
            with OUT.open("a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
