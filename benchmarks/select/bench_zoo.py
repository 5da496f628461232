"""Does the transferability ranking predict fine-tuned accuracy? (issue 13, must-shows 1 and 2)

For each target of ``zoo.py`` (USPS, 20 unseen Omniglot characters):
  1. ``tk.rank`` scores every zoo candidate with every score on the target's labelled training rows,
     with a cold (fresh) feature cache, timed;
  2. every candidate is fine-tuned with the same budget and 3 seeds (full fine-tuning, a new linear
     head, ``EPOCHS`` epochs of AdamW at lr 1e-3, batch 32, no validation split, no early stopping)
     and tested on the target's test rows;
  3. the weighted Kendall tau (``scipy.stats.weightedtau``, as You et al. 2021 use) between each
     score and the mean test accuracy over seeds, per target and averaged.
Must-show 2: the rank's wall time (cold cache) over the summed wall time of fine-tuning the zoo
once (seed 0) on the same target, in the same benchmark run.

Results (resumable: finished rows are skipped):
  benchmarks/results/select_zoo_sources.csv      the zoo: each source's data, epochs, seconds, accuracy
  benchmarks/results/select_zoo_rank.jsonl       one row per (target, candidate): every score, seconds
  benchmarks/results/select_zoo_finetune.jsonl   one row per (target, candidate, seed): test accuracy, seconds
  benchmarks/results/select_zoo.csv              weighted tau per (score, target) and the average
  benchmarks/results/select_zoo_timing.csv       rank vs fine-tuning time per target

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

sys.path.insert(0, str(Path(__file__).parent))
from zoo import BACKBONE, SEED, TARGETS, VIEW, build_zoo, source_rows  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
EPOCHS, BATCH, LR = 20, 32, 1e-3  # the fine-tuning budget, the same for every candidate
SEEDS = (0, 1, 2)


def _name(candidate: str) -> str:
    return candidate.split(":")[0] if candidate.startswith("random:") else Path(candidate).name


def _append(path: Path, row: dict) -> None:
    print(json.dumps(row), flush=True)
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def rank_target(work: Path, target: str, cands: list[str], out: Path) -> None:
    """``tk.rank`` on the target's training rows with a fresh feature cache; one row per candidate."""
    import transferkit as tk

    if any(r["target"] == target for r in _read(out)):
        return
    cache = work / "cache" / f"{target}-{time.time_ns()}"
    t0 = time.perf_counter()
    res = tk.rank(str(work / "data" / f"{target}_train.npz"), cands, metric="logme", out=work / "rank" / target,
                  overwrite=True, cache_dir=cache, device="cpu", progress=False, **VIEW)
    wall = time.perf_counter() - t0
    shutil.rmtree(cache, ignore_errors=True)
    for r in res.rows:
        row = {"target": target, "candidate": _name(r["candidate"]), "rank_wall_seconds": round(wall, 3)}
        row |= {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()
                if k not in ("candidate", "architecture")}
        _append(out, row)


def finetune_config(work: Path, target: str, candidate: str, seed: int) -> dict:
    weights = None if candidate.startswith("random:") else str(Path(candidate) / "model.safetensors")
    return {"name": f"{target}-{_name(candidate)}-s{seed}",
            "data": {"dataset": str(work / "data" / f"{target}_train.npz"),
                     "test": str(work / "data" / f"{target}_test.npz"), "val_fraction": 0.0, "seed": SEED, **VIEW},
            "model": dict(BACKBONE, weights=weights), "strategy": {"name": "full"},
            "train": {"epochs": EPOCHS, "batch_size": BATCH, "lr": LR, "seed": seed, "device": "cpu"}}


def finetune_target(work: Path, target: str, cands: list[str], out: Path) -> None:
    import transferkit as tk

    done = {(r["target"], r["candidate"], r["seed"]) for r in _read(out)}
    for seed in SEEDS:
        for c in cands:
            if (target, _name(c), seed) in done:
                continue
            t0 = time.perf_counter()
            res = tk.train(finetune_config(work, target, c, seed), out=work / "ft" / target / f"{_name(c)}-s{seed}",
                           overwrite=True, progress=False)
            _append(out, {"target": target, "candidate": _name(c), "seed": seed,
                          "test_accuracy": res.metrics["test/accuracy"], "train_seconds": res.metrics["train_seconds"],
                          "wall_seconds": round(time.perf_counter() - t0, 3)})


def tau_table(ranks: list[dict], fts: list[dict], scores: list[str]) -> list[dict]:
    """Weighted tau of each score against the mean fine-tuned accuracy, per target and averaged
    (candidates without the score, e.g. LEEP of the headless random network, are left out)."""
    rows = []
    for target in TARGETS:
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
        taus = [r["weighted_tau"] for r in rows if r["score"] == s and r["target"] in TARGETS]
        rows.append({"score": s, "target": "average", "candidates": "", "weighted_tau": round(float(np.mean(taus)), 3),
                     "top1_is_best": ""})
    return rows


def timing_table(ranks: list[dict], fts: list[dict]) -> list[dict]:
    rows = []
    for target in TARGETS:
        rk = [r for r in ranks if r["target"] == target]
        ft = [r for r in fts if r["target"] == target]
        once = sum(r["wall_seconds"] for r in ft if r["seed"] == SEEDS[0])
        wall = rk[0]["rank_wall_seconds"]
        rows.append({"target": target, "candidates": len(rk), "rank_wall_seconds": wall,
                     "rank_scoring_seconds": round(sum(r["seconds"] for r in rk), 3),
                     "finetune_once_seconds": round(once, 3),
                     "finetune_all_seeds_seconds": round(sum(r["wall_seconds"] for r in ft), 3),
                     "ratio_percent": round(100 * wall / once, 2)})
    return rows


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/work/bench_out/zoo"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    cands = build_zoo(args.work)
    _write_csv(RESULTS / "select_zoo_sources.csv", source_rows(args.work))
    rank_out, ft_out = RESULTS / "select_zoo_rank.jsonl", RESULTS / "select_zoo_finetune.jsonl"
    for target in TARGETS:
        rank_target(args.work, target, cands, rank_out)
        finetune_target(args.work, target, cands, ft_out)
    from transferkit.select import SCORES

    ranks, fts = _read(rank_out), _read(ft_out)
    taus = tau_table(ranks, fts, list(SCORES.names()))
    _write_csv(RESULTS / "select_zoo.csv", taus)
    timing = timing_table(ranks, fts)
    _write_csv(RESULTS / "select_zoo_timing.csv", timing)
    for r in taus:
        print(f"{r['score']:>20} {r['target']:>12} tau_w={r['weighted_tau']:+.3f} top1={r['top1_is_best']}")
    for r in timing:
        print(f"{r['target']}: rank {r['rank_wall_seconds']:.1f} s (cold cache) vs fine-tuning the zoo once "
              f"{r['finetune_once_seconds']:.1f} s: {r['ratio_percent']:.2f} %")


if __name__ == "__main__":
    main()
