"""The text half of the zoo benchmark: three encoders ranked and linear-probed on two Amazon domains.

Candidates (frozen encoders; the same budget for each: a linear head on 100 labelled reviews):
  minilm        the packaged all-MiniLM-L6-v2 (``hf_text``), mean pooling, 128 tokens
  random_minilm the same architecture with random weights (reset with seed 0, saved as a folder)
  tfidf_svd     TF-IDF (uni+bigrams, 20,000 terms) + truncated SVD to 128 dimensions, fit on the
                dvd and electronics reviews (no target text), rows L2-normalised
Targets: amazon_reviews books and kitchen, 50 labelled reviews per class (seeded) to train the head,
400 of the other 1,900 (seeded) to test (a frozen MiniLM encodes ~15 reviews/s on one busy core).

The two Hugging Face folders are ranked by ``tk.rank`` (cold cache, timed); TF-IDF vectors are not a
backbone, so its scores come from ``transferkit.select.score_all`` on its features of the same rows
(the functions tk.rank calls). Every head is trained by ``tk.train`` (``feature_extraction``:
the encoder frozen, features cached; 50 epochs, AdamW lr 1e-2, batch 25), 3 seeds. LEEP and NCE need
a source classifier head, which none of these encoders has. With three candidates per target, the
weighted tau takes few values; read it as a check of the order, not a statistic.

Run:  PYTHONPATH=src python benchmarks/select/bench_zoo_text.py --work /work/bench_out/zoo
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from bench_zoo import RESULTS, SEEDS, _append, _read, _write_csv, tau_table  # noqa: E402

DATA = Path(os.environ.get("TRANSFERKIT_DATA", "/work/shared/data"))
TARGETS, OTHER = ("books", "kitchen"), ("dvd", "electronics")
SHOTS, TEST, SEED = 50, 400, 0  # labelled reviews per class; test reviews (a seeded draw of the rest)
EPOCHS, BATCH, LR = 50, 25, 1e-2
CANDIDATES = ("minilm", "random_minilm", "tfidf_svd")


def _reviews() -> dict[str, list[dict]]:
    by = {}
    with gzip.open(DATA / "amazon_reviews" / "amazon_reviews.jsonl.gz", "rt", encoding="utf-8") as f:
        for r in map(json.loads, f):
            by.setdefault(r["domain"], []).append({"text": r["text"], "label": r["label"]})
    return by


def _random_minilm(folder: Path) -> None:
    """The MiniLM architecture with every layer reset (seed 0), saved as a Hugging Face folder."""
    from transferkit.backbones import create_backbone

    torch.manual_seed(0)
    enc = create_backbone("hf_text")
    for m in enc.modules():
        if m is not enc and hasattr(m, "reset_parameters"):
            m.reset_parameters()
    enc.encoder.save_pretrained(folder)
    enc.tokenizer.save_pretrained(folder)


def write_data(work: Path) -> None:
    """Per target: train/test JSONL (text) and NPZ (TF-IDF + SVD vectors); the random MiniLM folder."""
    out = work / "text"
    if (out / "kitchen_test.npz").is_file():
        return
    out.mkdir(parents=True, exist_ok=True)
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    by = _reviews()
    tfidf = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), max_features=20000, sublinear_tf=True),
                          TruncatedSVD(128, random_state=SEED), Normalizer())
    tfidf.fit([r["text"] for d in OTHER for r in by[d]])
    rng = np.random.default_rng(SEED)
    for d in TARGETS:
        rows, y = by[d], np.array([r["label"] for r in by[d]])
        train = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:SHOTS] for c in (0, 1)])
        test = np.sort(rng.choice(np.setdiff1d(np.arange(len(y)), train), TEST, replace=False))
        for part, idx in (("train", train), ("test", test)):
            with open(out / f"{d}_{part}.jsonl", "w", encoding="utf-8") as f:
                f.writelines(json.dumps(rows[i]) + "\n" for i in idx)
            x = tfidf.transform([rows[i]["text"] for i in idx]).astype(np.float32)
            np.savez(out / f"{d}_{part}.npz", x=x, y=y[idx])
    _random_minilm(out / "random_minilm")


def rank_target(work: Path, target: str, out: Path, times: Path) -> None:
    import transferkit as tk
    from transferkit.backbones.hf import minilm_path
    from transferkit.select import score_all

    if any(r["target"] == target for r in _read(out)):
        return
    folders = {"minilm": str(minilm_path()), "random_minilm": str(work / "text" / "random_minilm")}
    cache = work / "cache" / f"text-{target}-{time.time_ns()}"
    t0 = time.perf_counter()
    # the target's file holds only its labelled training reviews (the test reviews are another file): score them all
    res = tk.rank(str(work / "text" / f"{target}_train.jsonl"), list(folders.values()), out=None, cache_dir=cache,
                  test_fraction=0.0, device="cpu", progress=False)
    wall = time.perf_counter() - t0
    shutil.rmtree(cache, ignore_errors=True)
    names = {v: k for k, v in folders.items()}
    for r in res.rows:
        if r["kind"] == "reference":  # rank's own random:hf_text beside the folders (the same architecture)
            continue
        row = {"target": target, "candidate": names[r["candidate"]], "rank_wall_seconds": round(wall, 3)}
        _append(out, row | {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()
                            if k not in ("candidate", "architecture")})
    d = np.load(work / "text" / f"{target}_train.npz")
    t0 = time.perf_counter()
    scores = score_all(labels=d["y"], features=d["x"])
    secs = time.perf_counter() - t0
    _append(out, {"target": target, "candidate": "tfidf_svd", "kind": "vectors", "seconds": round(secs, 3)}
            | {k: scores.get(k) for k in ("gbc", "hscore", "hscore_regularised", "leep", "logme", "nce", "transrate")})
    _append(times, {"target": target, "mode": "runs", "candidates": 3, "wall_seconds": round(wall + secs, 3)})


def config(work: Path, target: str, cand: str, seed: int) -> dict:
    from transferkit.backbones.hf import minilm_path

    t = work / "text"
    if cand == "tfidf_svd":
        data = {"dataset": str(t / f"{target}_train.npz"), "test": str(t / f"{target}_test.npz")}
        model = {"backbone": "mlp", "backbone_args": {"in_features": 128, "hidden": []}}
    else:
        data = {"dataset": str(t / f"{target}_train.jsonl"), "test": str(t / f"{target}_test.jsonl")}
        folder = minilm_path() if cand == "minilm" else t / "random_minilm"
        model = {"backbone": "hf_text", "weights": str(folder)}
    return {"name": f"{target}-{cand}-s{seed}", "data": data | {"val_fraction": 0.0, "seed": SEED}, "model": model,
            "strategy": {"name": "feature_extraction"},
            "train": {"epochs": EPOCHS, "batch_size": BATCH, "lr": LR, "seed": seed, "device": "cpu"}}


def finetune_target(work: Path, target: str, out: Path) -> None:
    import transferkit as tk

    done = {(r["target"], r["candidate"], r["seed"]) for r in _read(out)}
    for seed in SEEDS:
        for c in CANDIDATES:
            if (target, c, seed) in done:
                continue
            t0 = time.perf_counter()
            res = tk.train(config(work, target, c, seed), out=work / "ft-text" / target / f"{c}-s{seed}",
                           overwrite=True, progress=False)
            _append(out, {"target": target, "candidate": c, "seed": seed,
                          "test_accuracy": res.metrics["test/accuracy"], "train_seconds": res.metrics["train_seconds"],
                          "wall_seconds": round(time.perf_counter() - t0, 3)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/bench_select"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    threadpool_limits(1)
    write_data(args.work)
    rank_out, ft_out = RESULTS / "select_zoo_text_rank.jsonl", RESULTS / "select_zoo_text_finetune.jsonl"
    times_out = RESULTS / "select_zoo_text_rank_time.jsonl"
    for target in TARGETS:
        rank_target(args.work, target, rank_out, times_out)
        finetune_target(args.work, target, ft_out)
    ranks, fts = _read(rank_out), _read(ft_out)
    taus = tau_table(ranks, fts, ["gbc", "hscore", "hscore_regularised", "logme", "transrate"],
                     TARGETS)
    _write_csv(RESULTS / "select_zoo_text.csv", taus)
    for r in taus:
        print(f"{r['score']:>20} {r['target']:>12} tau_w={r['weighted_tau']:+.3f} top1={r['top1_is_best']}")
    for target in TARGETS:
        once = min(sum(r["wall_seconds"] for r in fts if r["target"] == target and r["seed"] == s) for s in SEEDS)
        wall = next(r["wall_seconds"] for r in _read(times_out) if r["target"] == target)
        print(f"{target}: rank {wall:.1f} s (cold cache) vs fine-tuning the 3 encoders once {once:.1f} s: "
              f"{100 * wall / once:.2f} %")


if __name__ == "__main__":
    main()
