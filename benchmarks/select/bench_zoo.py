"""Does the transferability ranking predict fine-tuned accuracy? (issue 13, must-shows 1 and 2)

For each target of ``zoo.py`` (USPS, 20 unseen Omniglot characters):
  1. ``tk.rank`` scores every zoo candidate with every score on the target's labelled training rows,
     with a cold (fresh) feature cache, timed;
  2. every candidate is fine-tuned with the same budget and 3 seeds (full fine-tuning, a new linear
     head, ``EPOCHS`` epochs of AdamW at lr 1e-3, batch 25 (four equal batches of the 100 labelled rows),
     no validation split, no early stopping)
     and tested on the target's test rows;
  3. the weighted Kendall tau (``scipy.stats.weightedtau``, as You et al. 2021 use) between each
     score and the mean test accuracy over seeds, per target and averaged.
Must-show 2: the rank's wall time (cold cache; the fastest of 3 runs) over the summed wall time of fine-tuning the zoo
on the same target, in the same benchmark run: every candidate and seed (what step 2 runs), and once
(the fastest of the 3 seeds' sums); for the run directories (every score,
and the MMD / proxy-A distance to each run's source data) and for the same weights given as
``small_cnn=WEIGHTS`` (the feature scores only).

Results (resumable: finished rows are skipped):
  benchmarks/results/select_zoo_sources.csv      the zoo: each source's data, epochs, seconds, accuracy
  benchmarks/results/select_zoo_rank.jsonl       one row per (target, candidate): every score, seconds
  benchmarks/results/select_zoo_finetune.jsonl   one row per (target, candidate, seed): test accuracy, seconds
  benchmarks/results/select_zoo.csv              weighted tau per (score, target) and the average
  benchmarks/results/select_zoo_rank_time.jsonl  the rank's wall time per target (run dirs / weights files)
  benchmarks/results/select_zoo_timing.csv       rank vs fine-tuning time per target
(``--batch 32 --tag b32`` wrote the select_zoo_b32* files: the first protocol, see BENCHMARKS.md.)

Run:  PYTHONPATH=src python benchmarks/select/bench_zoo.py --work /work/bench_out/zoo
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import weightedtau
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from zoo import BACKBONE, SEED, TARGETS, VIEW, build_zoo, source_rows  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
EPOCHS, BATCH, LR = 20, 25, 1e-3  # the fine-tuning budget, the same for every candidate
SEEDS = (0, 1, 2)


def _name(candidate: str) -> str:
    return candidate.split(":")[0] if candidate.startswith("random:") else Path(candidate).name


def _append(path: Path, row: dict) -> None:
    print(json.dumps(row), flush=True)
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _timed_rank(work: Path, target: str, cands: list[str], out: Path | None, repeats: int = len(SEEDS)):
    """``tk.rank`` on the target's training rows with a fresh (cold) feature cache each time, and its wall
    time: the fastest of ``repeats`` runs, as fine-tuning's is the fastest of the seeds (a busy machine only
    ever slows a run down)."""
    import transferkit as tk

    walls = []
    for _ in range(repeats):
        cache = work / "cache" / f"{target}-{time.time_ns()}"
        t0 = time.perf_counter()
        # the target's file holds only its 100 labelled training rows (the test rows are another file): score them all
        res = tk.rank(str(work / "data" / f"{target}_train.npz"), cands, metric="logme", out=out, overwrite=True,
                      test_fraction=0.0, cache_dir=cache, device="cpu", progress=False, **VIEW)
        walls.append(round(time.perf_counter() - t0, 3))
        shutil.rmtree(cache, ignore_errors=True)
    return res, walls


def rank_target(work: Path, target: str, cands: list[str], out: Path, times: Path) -> None:
    """Rank the zoo (run directories: every score, and the source-target distances), then time the
    features-only ranking of the same weights (``small_cnn=WEIGHTS``: LogME, H-score, TransRate, GBC)."""
    if any(r["target"] == target for r in _read(out)):
        return
    res, walls = _timed_rank(work, target, cands, work / "rank" / target)
    wall = min(walls)
    for r in res.rows:
        row = {"target": target, "candidate": _name(r["candidate"]), "rank_wall_seconds": wall}
        row |= {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()
                if k not in ("candidate", "architecture")}
        _append(out, row)
    weights = [c if c.startswith("random:") else f"small_cnn={c}/model.safetensors" for c in cands]
    _, fwalls = _timed_rank(work, target, weights, None)
    for mode, ws in (("runs", walls), ("weights", fwalls)):
        _append(times, {"target": target, "mode": mode, "candidates": len(cands), "wall_seconds": min(ws),
                        "every_wall_seconds": ws})


def finetune_config(work: Path, target: str, candidate: str, seed: int, batch: int = BATCH) -> dict:
    weights = None if candidate.startswith("random:") else str(Path(candidate) / "model.safetensors")
    return {"name": f"{target}-{_name(candidate)}-s{seed}",
            "data": {"dataset": str(work / "data" / f"{target}_train.npz"),
                     "test": str(work / "data" / f"{target}_test.npz"), "val_fraction": 0.0, "seed": SEED, **VIEW},
            "model": dict(BACKBONE, weights=weights), "strategy": {"name": "full"},
            "train": {"epochs": EPOCHS, "batch_size": batch, "lr": LR, "seed": seed, "device": "cpu"}}


def finetune_target(work: Path, target: str, cands: list[str], out: Path, batch: int) -> None:
    import transferkit as tk

    done = {(r["target"], r["candidate"], r["seed"]) for r in _read(out)}
    for seed in SEEDS:
        for c in cands:
            if (target, _name(c), seed) in done:
                continue
            t0 = time.perf_counter()
            res = tk.train(finetune_config(work, target, c, seed, batch), overwrite=True, progress=False,
                           out=work / f"ft-b{batch}" / target / f"{_name(c)}-s{seed}")
            _append(out, {"target": target, "candidate": _name(c), "seed": seed,
                          "test_accuracy": res.metrics["test/accuracy"], "train_seconds": res.metrics["train_seconds"],
                          "wall_seconds": round(time.perf_counter() - t0, 3)})


def tau_table(ranks: list[dict], fts: list[dict], scores: list[str], targets=TARGETS) -> list[dict]:
    """Weighted tau of each score against the mean fine-tuned accuracy, per target and averaged
    (candidates without the score, e.g. LEEP of the headless random network, are left out)."""
    rows = []
    for target in targets:
        acc = {}
        for r in fts:
            if r["target"] == target:
                acc.setdefault(r["candidate"], []).append(r["test_accuracy"])
        for s in scores:
            pairs = [(r[s], float(np.mean(acc[r["candidate"]]))) for r in ranks
                     if r["target"] == target and r[s] is not None and r["candidate"] in acc]
            x, y = map(np.array, zip(*pairs)) if pairs else (np.array([]), np.array([]))
            tau = float(weightedtau(x, y).statistic) if len(x) > 2 else float("nan")
            top = max(pairs)[1] == max(y) if pairs else False  # the score's top candidate is the best fine-tuned
            rows.append({"score": s, "target": target, "candidates": len(x), "weighted_tau": round(tau, 3),
                         "top1_is_best": top})
    for s in scores:
        taus = [r["weighted_tau"] for r in rows if r["score"] == s and r["target"] in targets]
        rows.append({"score": s, "target": "average", "candidates": "", "weighted_tau": round(float(np.mean(taus)), 3),
                     "top1_is_best": ""})
    return rows


def timing_table(times: list[dict], fts: list[dict]) -> list[dict]:
    rows = []
    for target in TARGETS:
        rk = {r["mode"]: r["wall_seconds"] for r in times if r["target"] == target}
        ft = [r for r in fts if r["target"] == target]
        # fine-tuning the zoo once: the fastest seed's sum (a busy machine only ever slows a run down)
        once = min(sum(r["wall_seconds"] for r in ft if r["seed"] == s) for s in SEEDS)
        every = sum(r["wall_seconds"] for r in ft)  # what this benchmark runs: every candidate, every seed
        rows.append({"target": target, "candidates": len(ft) // len(SEEDS), "rank_runs_seconds": rk["runs"],
                     "rank_weights_seconds": rk["weights"], "finetune_once_seconds": round(once, 3),
                     "finetune_all_seeds_seconds": round(every, 3),
                     "ratio_runs_percent": round(100 * rk["runs"] / once, 2),
                     "ratio_weights_percent": round(100 * rk["weights"] / once, 2),
                     "ratio_runs_all_seeds_percent": round(100 * rk["runs"] / every, 2),
                     "ratio_weights_all_seeds_percent": round(100 * rk["weights"] / every, 2)})
    return rows


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/bench_select"))
    ap.add_argument("--batch", type=int, default=BATCH, help="fine-tuning batch size")
    ap.add_argument("--tag", default="", help="suffix of the results files (another protocol)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    threadpool_limits(1)  # numpy's BLAS too: on a busy machine its threads slow the scores several times
    cands = build_zoo(args.work)
    name = "select_zoo" + (f"_{args.tag}" if args.tag else "")
    _write_csv(RESULTS / "select_zoo_sources.csv", source_rows(args.work))
    rank_out, ft_out = RESULTS / f"{name}_rank.jsonl", RESULTS / f"{name}_finetune.jsonl"
    times_out = RESULTS / f"{name}_rank_time.jsonl"
    for target in TARGETS:
        rank_target(args.work, target, cands, rank_out, times_out)
        finetune_target(args.work, target, cands, ft_out, args.batch)
    from transferkit.select import SCORES

    ranks, fts = _read(rank_out), _read(ft_out)
    taus = tau_table(ranks, fts, list(SCORES.names()))
    _write_csv(RESULTS / f"{name}.csv", taus)
    timing = timing_table(_read(times_out), fts)
    _write_csv(RESULTS / f"{name}_timing.csv", timing)
    for r in taus:
        print(f"{r['score']:>20} {r['target']:>12} tau_w={r['weighted_tau']:+.3f} top1={r['top1_is_best']}")
    for r in timing:
        print(f"{r['target']}: rank {r['rank_runs_seconds']:.1f} s (run dirs, cold cache; "
              f"{r['rank_weights_seconds']:.1f} s as weights files) vs fine-tuning the zoo once "
              f"{r['finetune_once_seconds']:.1f} s: {r['ratio_runs_percent']:.2f} % "
              f"({r['ratio_weights_percent']:.2f} %); vs every seed {r['finetune_all_seeds_seconds']:.1f} s: "
              f"{r['ratio_runs_all_seeds_percent']:.2f} % ({r['ratio_weights_all_seeds_percent']:.2f} %)")


if __name__ == "__main__":
    main()
