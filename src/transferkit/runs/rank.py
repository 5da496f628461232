"""``transferkit rank``: which source model to transfer from, scored on the target data before any
fine-tuning (the scores of ``transferkit.select``: LogME, H-score, TransRate, GBC from the features;
LEEP and NCE from a classifier head of the candidate's own).

Each candidate's features of the target rows (every row outside the test split that ``train`` holds
out with the same seed and ``data.test_fraction``, or ``shots`` labelled rows per class of them, a
seeded draw; never a test row) are extracted once and cached on disk, keyed on the content of the data files and of
the candidate's weights. A random initialisation of each candidate architecture is scored beside
them (the from-scratch reference), and when every candidate scores below the reference of its own
architecture a warning says so. For a run directory, whose source data is known, the table also
gives the MMD and proxy-A distance between source and target features in its feature space.
Writes ``rank.csv``, ``rank.html`` and ``inputs.json`` into ``out``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from transferkit import __version__
from transferkit.data import Subset, load_dataset, load_rows
from transferkit.data.splits import make_splits
from transferkit.engine.progress import EpochProgress
from transferkit.errors import TransferkitError
from transferkit.finetune.feature_extraction import extract_features
from transferkit.model import TransferModel
from transferkit.multitask.datasets import content_digest, data_files
from transferkit.runs.candidates import RANDOM_SEED, SYNTAX, Built, Candidate, build, check_fits, fill_args, \
    parse_candidates
from transferkit.runs.domain import domain_distances, sample_rows
from transferkit.select import SCORES, applicable, score_all

DEFAULT_METRIC = "logme"
SOURCE_SAMPLE = 500  # at most this many rows of a run's source data (a seeded draw), and no more than the
# target rows scored: the proxy-A distance compares equal samples, and only the sampled rows are read
CHUNK = 256  # rows per extraction call (the progress bar advances per chunk)
PAD_MIN_ROWS = 8  # the proxy-A distance needs this many rows per domain


@dataclass
class RankResult:
    """The ranking: one row per candidate and reference, best first by ``metric``."""

    rows: list[dict]
    metric: str
    warning: str | None
    out: Path | None


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The feature cache folder: ``cache_dir``, else $TRANSFERKIT_CACHE, else ~/.cache/transferkit."""
    return Path(cache_dir or os.environ.get("TRANSFERKIT_CACHE") or Path.home() / ".cache" / "transferkit") / "features"


def cache_file(root: Path, c: Candidate, spec: str, rows: np.ndarray, data_root) -> Path:
    """Where the features of ``spec[rows]`` by candidate ``c`` are cached: keyed on the content of the
    data files and of the candidate's weights (and a text run's tokenizer files), so a file changed in
    place is never read stale, and on the versions of transferkit and torch, which a random
    reference's initialisation follows."""
    key = json.dumps(["rank-v1", __version__, torch.__version__, spec, list(c.view), c.kind, c.backbone, c.args,
                      RANDOM_SEED if c.kind == "random" else None, hashlib.sha1(rows.tobytes()).hexdigest(),
                      content_digest(data_files(spec, data_root)), content_digest(c.files())],
                     sort_keys=True, default=str)
    return root / f"rank-{c.backbone.replace('/', '_')}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"


def _extract(built: Built, data, rows: np.ndarray, progress: EpochProgress) -> np.ndarray:
    """The backbone's features of ``data[rows]``, in chunks (one progress step each)."""
    model = TransferModel(built.backbone, nn.Identity())
    parts = []
    for i in range(0, len(rows), CHUNK):
        part = rows[i:i + CHUNK]
        parts.append(extract_features(model, Subset(data, part)).x)
        progress.advance(len(part))
    return torch.cat(parts).numpy()


def encode(built: Built, data, rows: np.ndarray, path: Path, progress: EpochProgress) -> tuple[np.ndarray, bool]:
    """The features of ``data[rows]``, read from the cache file ``path`` or extracted and written there;
    and whether they came from the cache."""
    if path.is_file():
        return np.load(path)["x"], True
    x = _extract(built, data, rows, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, x=x)
    os.replace(tmp, path)
    return x, False


def _check_metric(metric: str, candidates: list[Candidate]) -> None:
    SCORES.get(metric)  # an unknown name: did-you-mean
    needs = SCORES.get(metric).needs
    if needs == "features":
        return
    headless = next((c for c in candidates if c.kind != "run"), None)
    if headless is not None:
        raise TransferkitError(f"Metric '{metric}' reads the source model's class probabilities, and candidate "
                               f"'{headless.spec}' has no classifier head; rank by a feature score "
                               f"({', '.join(applicable('classification', ('features',)))}) or give run directories.")


def _check_out(out: Path | None, overwrite: bool) -> None:
    if out is not None and out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise TransferkitError(f"Output directory '{out}' already exists; pass --overwrite to replace it or choose "
                               "another --out.")


def _views(data: str, candidates: list[Candidate], data_dir) -> dict[tuple, object]:
    """The target read once per view ``(image_size, channels, preprocess)`` the candidates need."""
    views = {}
    for c in candidates:
        if c.view not in views:
            size, channels, preprocess = c.view
            views[c.view] = load_dataset(data, data_dir, size, channels, task="classification", preprocess=preprocess)
    return views


def _rows(y: np.ndarray, shots: int | None, seed: int, test_fraction: float = 0.2) -> np.ndarray:
    """The rows rank scores: outside the stratified test split that ``make_splits`` (so ``train``) holds out
    first with this ``seed`` and ``test_fraction``; ``shots`` per class of them when given."""
    return make_splits(y, seed=seed, val_fraction=0.0, test_fraction=test_fraction, shots=shots).train


def _with_references(candidates: list[Candidate]) -> list[Candidate]:
    """The candidates, then one random reference per architecture (unless a candidate is that reference)."""
    key = lambda c: (c.backbone, json.dumps(c.args, sort_keys=True, default=str), c.view)  # noqa: E731
    have = {key(c) for c in candidates if c.kind == "random"}
    refs = {}
    for c in candidates:
        if c.kind != "random" and key(c) not in have:
            refs.setdefault(key(c), c.reference_of())
    return candidates + list(refs.values())


def _source_sample(c: Candidate, n: int, seed: int, data_dir):
    """``n`` seeded rows of the candidate's source data, read as it was trained on, and their indices; or
    None (with the reason) if unreadable. Only the sampled rows are resized and standardised."""
    size, channels, preprocess = c.view
    try:
        return load_rows(c.source, lambda total: sample_rows(total, n, seed), data_dir, size, channels,
                         task="classification", preprocess=preprocess), None
    except TransferkitError as e:
        return (None, None), str(e)


def _fit_layout(c: Candidate, built: Built, data, rows: np.ndarray, target: str) -> None:
    """``check_fits`` with the candidate's backbone in channels-last memory, where convolutions and pooling take
    faster CPU kernels (small_cnn's features about twice as fast on one thread, equal to 1e-6); a backbone that
    cannot run so (a 5-D weight, a ``view`` of a convolution's output) is checked and kept in its default layout.
    The backbone is rank's own copy, read from the candidate's files."""
    try:
        built.backbone.to(memory_format=torch.channels_last)
        check_fits(c, built, data, rows, target)
        return
    except (RuntimeError, TransferkitError):
        built.backbone.to(memory_format=torch.contiguous_format)
    check_fits(c, built, data, rows, target)


@dataclass
class _Job:
    """One candidate, built and checked, with the cache files of its target (and source) features."""

    candidate: Candidate
    built: Built
    path: Path
    source: object | None = None  # the sampled source rows (run directories whose source data is readable)
    source_rows: np.ndarray | None = None  # their indices in the source dataset
    source_path: Path | None = None
    source_note: str | None = None


def _plan(data: str, candidates: list[Candidate], views: dict, rows: np.ndarray, data_dir, root: Path,
          seed: int) -> list[_Job]:
    """Build and check every candidate (weights load, inputs fit) and find its cache files: all before any
    feature is extracted."""
    jobs = []
    for c in candidates:
        built = build(c)
        _fit_layout(c, built, views[c.view], rows, data)
        job = _Job(c, built, cache_file(root, c, data, rows, data_dir))
        if c.source is not None:
            (job.source, job.source_rows), job.source_note = _source_sample(c, min(SOURCE_SAMPLE, len(rows)), seed,
                                                                            data_dir)
            if job.source is not None:
                try:
                    check_fits(c, built, job.source, np.arange(len(job.source)), c.source)
                    job.source_path = cache_file(root, c, c.source, job.source_rows, data_dir)
                except TransferkitError as e:
                    job.source, job.source_note = None, str(e)
        jobs.append(job)
    return jobs


def _distances(src: np.ndarray, tgt: np.ndarray, seed: int) -> dict[str, float]:
    if min(len(src), len(tgt)) < PAD_MIN_ROWS:
        from transferkit.metrics.domain import mmd2

        return {"mmd": float(mmd2(src, tgt)), "pad": float("nan")}
    return domain_distances(src, tgt, seed=seed)


def _score(job: _Job, views: dict, rows: np.ndarray, labels: np.ndarray, progress: EpochProgress,
           seed: int) -> dict:
    """One candidate's row: every applicable score, the domain distance, the seconds spent."""
    c = job.candidate
    t0 = time.perf_counter()
    feats, cached = encode(job.built, views[c.view], rows, job.path, progress)
    t1 = time.perf_counter()
    probs = None
    if job.built.head is not None:
        with torch.no_grad():
            head = job.built.head.cpu().eval()
            probs = torch.softmax(head(torch.as_tensor(feats)).double(), -1).numpy()
    scores = score_all(labels=labels, features=feats, probs=probs)
    t2 = time.perf_counter()
    row = {"candidate": c.spec, "kind": "reference" if c.reference else c.kind, "backbone": c.backbone,
           "architecture": json.dumps([c.backbone, c.args, list(c.view)], sort_keys=True, default=str),
           "features": int(feats.shape[1]), "rows": len(rows)} | {n: scores.get(n, float("nan")) for n in SCORES.names()}
    row |= {"mmd": float("nan"), "pad": float("nan"), "source": c.source or "", "note": job.source_note or ""}
    if job.source is not None:
        src, _ = encode(job.built, job.source, np.arange(len(job.source)), job.source_path, progress)
        row |= _distances(src, feats, seed)
    return row | {"cached": cached, "extract_seconds": round(t1 - t0, 3), "score_seconds": round(t2 - t1, 3),
                  "seconds": round(t2 - t0, 3)}


def _missing_rows(jobs: list[_Job], rows: np.ndarray) -> int:
    """Rows still to extract (what the progress bar counts)."""
    n = sum(len(rows) for j in jobs if not j.path.is_file())
    return n + sum(len(j.source_rows) for j in jobs if j.source is not None and not j.source_path.is_file())


def reference_warning(rows: list[dict], metric: str) -> str | None:
    """A warning when every candidate's ``metric`` is below that of the random initialisation of its own
    architecture (None when some candidate beats it, or when no reference has the score)."""
    arch = lambda r: r.get("architecture", r["backbone"])  # noqa: E731 - the network and how it reads the data
    refs = {arch(r): r[metric] for r in rows if r["kind"] in ("reference", "random")}
    pairs = [(r[metric], refs[arch(r)]) for r in rows if r["kind"] not in ("reference", "random")
             and arch(r) in refs and not math.isnan(refs[arch(r)])]
    if not pairs or any(s >= ref for s, ref in pairs):
        return None
    return (f"Every candidate's {metric} is below that of a random initialisation of its own architecture: none of "
            "them looks transferable to this target, and training from scratch may do as well.")


def rank(data: str, candidates: str | list[str], metric: str = DEFAULT_METRIC, shots: int | None = None,
         out: str | Path | None = None, overwrite: bool = False, data_dir: str | Path | None = None, seed: int = 0,
         image_size: int | None = None, channels: int = 3, preprocess: str = "none", test_fraction: float = 0.2,
         cache_dir: str | Path | None = None, device: str = "auto", progress: bool | None = None) -> RankResult:
    """Score every candidate on the target ``data`` with every applicable transferability score, best
    first by ``metric``, beside a random initialisation of each candidate architecture.

    Args:
        data: the target dataset (``name:domain``, an .npz, an image folder, a text file).
        candidates: comma-separated (or a list): run directories, ``BACKBONE=WEIGHTS``, Hugging Face
            folders, ``random:BACKBONE``.
        metric: the score that orders the table (``transferkit.select.SCORES``).
        shots: score on this many labelled target rows per class (a seeded draw); None: every row outside
            the test split.
        out: where rank.csv, rank.html and inputs.json go (None: nothing is written).
        overwrite: replace an existing ``out``.
        data_dir: the folder of named datasets (else $TRANSFERKIT_DATA).
        seed: the draw of the test split, of the ``shots`` rows and of the source sample (use the seed
            of the runs that will follow, so that rank never reads their test rows).
        test_fraction: the target's test split to leave out, as the runs' ``data.test_fraction``
            (0: score every row; a config with ``test_fraction: rest`` has no fixed test split, so
            give the fraction of rows its runs will test on).
        image_size, channels, preprocess: how the target is read for candidates other than run
            directories (a run's own data settings are used for it).
        cache_dir: the feature cache (else $TRANSFERKIT_CACHE, else ~/.cache/transferkit).
        device: ``auto`` (a GPU when there is one), ``cpu`` or ``cuda``.
        progress: show a progress bar over the extraction (None: when stderr is a terminal).

    Example:
        >>> res = rank("mnist_usps:usps", "runs/mnist-source,random:small_cnn", shots=20, out="runs/rank")
        >>> res.rows[0]["candidate"], res.warning
    """
    out = Path(out) if out is not None else None
    if not 0.0 <= test_fraction < 1.0:
        raise TransferkitError(f"rank: --test-fraction must be in [0, 1) (the runs' data.test_fraction); "
                               f"got {test_fraction!r}.")
    _check_out(out, overwrite)
    parsed = parse_candidates(candidates)
    _check_metric(metric, parsed)
    parsed = [c if c.kind == "run" else replace(c, view=(image_size, channels, preprocess)) for c in parsed]
    views = _views(data, parsed, data_dir)
    labels_all = np.asarray(next(iter(views.values())).targets)
    rows = _rows(labels_all, shots, seed, test_fraction)
    parsed = [fill_args(c, views[c.view][int(rows[0])][0]) for c in parsed]
    jobs = _plan(data, _with_references(parsed), views, rows, data_dir, cache_root(cache_dir), seed)
    if out is not None:
        from transferkit.api import prepare_run_dir

        prepare_run_dir(out, overwrite, resume=False)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else "cpu" if device == "auto" else device)
    labels = np.unique(labels_all[rows], return_inverse=True)[1]
    results = []
    with EpochProgress(_missing_rows(jobs, rows), progress, description="extract features") as bar:
        for job in jobs:
            bar.describe(f"extract {job.candidate.spec}")
            job.built.backbone.to(dev)  # the memory layout _fit_layout chose is kept
            results.append(_score(job, views, rows, labels, bar, seed))
            job.built.backbone.cpu()
    results.sort(key=lambda r: -np.inf if math.isnan(r[metric]) else -r[metric])
    for i, r in enumerate(results, 1):
        r["rank"] = i
    warning = reference_warning(results, metric)
    res = RankResult(results, metric, warning, out)
    if out is not None:
        write_outputs(res, {"data": data, "data_dir": str(data_dir) if data_dir else None, "metric": metric,
                            "shots": shots, "seed": seed, "test_fraction": test_fraction, "rows": len(rows), "classes": int(labels.max()) + 1,
                            "candidates": [_resolved(j.candidate) for j in jobs]})
    return res


def _resolved(c: Candidate) -> dict:
    return {"spec": c.spec, "kind": c.kind, "backbone": c.backbone, "weights": c.weights, "args": c.args,
            "run_dir": str(c.run_dir) if c.run_dir else None, "view": dict(zip(("image_size", "channels", "preprocess"),
                                                                              c.view)),
            "source": c.source, "reference": c.reference}


COLUMNS = ("rank", "candidate", "kind", "backbone", "features", "rows", *SCORES.names(), "mmd", "pad", "source",
           "cached", "extract_seconds", "score_seconds", "seconds", "note")


def table_rows(res: RankResult) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the ranking table (terminal and HTML): the ordering score first."""
    names = [res.metric] + [n for n in SCORES.names() if n != res.metric and any(not math.isnan(r[n]) for r in res.rows)]
    fmt = lambda v, d=3: "" if isinstance(v, float) and math.isnan(v) else f"{v:.{d}f}"  # noqa: E731
    headers = ["#", "candidate", *names, "MMD", "proxy-A", "seconds"]
    cells = [[r["rank"], r["candidate"] + (" (reference)" if r["kind"] == "reference" else ""),
              *(fmt(r[n]) for n in names), fmt(r["mmd"]), fmt(r["pad"], 2), fmt(r["seconds"], 1)] for r in res.rows]
    return headers, [[str(c) for c in row] for row in cells]


def write_outputs(res: RankResult, inputs: dict) -> None:
    """rank.csv (every column), rank.html (the table, the warning, the inputs) and inputs.json."""
    from transferkit.report import write_html

    with open(res.out / "rank.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows([{k: r[k] for k in COLUMNS} for r in res.rows])
    (res.out / "inputs.json").write_text(json.dumps(inputs, indent=2), encoding="utf-8")
    headers, cells = table_rows(res)
    intro = (f"Transferability of each candidate to '{inputs['data']}' ({inputs['rows']} target rows, "
             f"{inputs['classes']} classes), best first by {res.metric}; higher is better for every score. A reference "
             "is a random initialisation of a candidate's architecture. MMD and proxy-A: the distance between the "
             "candidate's source data and the target in its feature space (run directories).")
    if res.warning:
        intro = f"Warning: {res.warning} {intro}"
    write_html(res.out / "rank.html", f"transferkit rank: {inputs['data']}", intro, [("Ranking", headers, cells)], [],
               details=inputs)


__all__ = ["DEFAULT_METRIC", "RankResult", "SYNTAX", "rank", "reference_warning", "table_rows"]
