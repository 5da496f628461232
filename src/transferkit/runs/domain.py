"""What a domain-adaptation run measures besides accuracy: label-free selection scores every epoch,
and the distance between source and target features before and after training (with a 2-D map)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from transferkit.data import Subset
from transferkit.engine.evaluate import predict_outputs
from transferkit.metrics.domain import mmd2, proxy_a_distance
from transferkit.metrics.selection import (density_ratio, dev_risk, information_maximisation, iwv_risk,
                                           prediction_entropy, snd)
from transferkit.model import TransferModel

MAP_POINTS = 300  # rows of each domain in the 2-D map
SAMPLE = 1000  # rows of each domain the scores and distances use (a fixed, seeded draw)
SCORES = {"target/snd": "soft neighbourhood density of the target predictions (higher is better)",
          "target/entropy": "mean entropy of the target predictions (lower is better)",
          "target/im": "information maximisation: entropy of the mean target prediction minus the mean entropy "
                       "(higher is better)",
          "val/iwv": "importance-weighted validation loss on the source (lower is better)",
          "val/dev": "deep embedded validation loss on the source (lower is better)"}


def sample_rows(total: int, n: int = SAMPLE, seed: int = 0) -> np.ndarray:
    """At most ``n`` of ``total`` row indices, sorted, drawn once with ``seed`` (all of them when fewer)."""
    if total <= n:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, n, replace=False))


def sample(dataset: Dataset, n: int = SAMPLE, seed: int = 0) -> Dataset:
    """At most ``n`` rows of ``dataset``, drawn once with ``seed`` (``sample_rows``)."""
    if len(dataset) <= n:
        return dataset
    return Subset(dataset, sample_rows(len(dataset), n, seed))


class TargetScores:
    """Scores to choose an epoch (``train.monitor``) without target labels, computed after every epoch:
    ``target/snd``, ``target/entropy`` and ``target/im`` from the target predictions; with labelled source validation
    data, ``val/iwv`` and ``val/dev``, its losses weighted by the density ratio target / source of the
    features (Sugiyama et al., 2007; You et al., 2019), estimated from the source training rows
    (``source``) against the target rows."""

    def __init__(self, target: Dataset, source: Dataset, source_val: Dataset | None = None, batch_size: int = 256,
                 seed: int = 0):
        self.target, self.source = sample(target, seed=seed), sample(source, seed=seed)
        self.val = sample(source_val, seed=seed) if source_val else None
        self.batch_size, self.seed = batch_size, seed

    def __call__(self, model: TransferModel) -> dict[str, float]:
        logits, ft, _ = predict_outputs(model, self.target, self.batch_size)
        probs = torch.softmax(logits, -1)
        scores = {"target/snd": snd(probs), "target/entropy": prediction_entropy(probs),
                  "target/im": information_maximisation(probs)}
        if self.val is not None and len(self.val) >= 10:
            vl, fv, y = predict_outputs(model, self.val, self.batch_size)
            losses = F.cross_entropy(vl, y, reduction="none").numpy()
            # the ratio's classifier learns source training rows against target rows, then weighs the
            # validation rows it never saw (as DEV's reference code)
            fs = predict_outputs(model, self.source, self.batch_size)[1]
            w = density_ratio(fs.numpy(), ft.numpy(), fv.numpy(), seed=self.seed)
            scores |= {"val/iwv": iwv_risk(losses, w), "val/dev": dev_risk(losses, w)}
        return scores


def features(model: TransferModel, dataset: Dataset, batch_size: int = 256) -> np.ndarray:
    return predict_outputs(model, dataset, batch_size)[1].numpy()


def domain_distances(src: np.ndarray, tgt: np.ndarray, seed: int = 0) -> dict[str, float]:
    """MMD (multi-kernel, median bandwidth) and proxy-A-distance between two feature samples."""
    return {"mmd": float(mmd2(src, tgt)), "pad": proxy_a_distance(src, tgt, seed=seed)}


def distance_report(before: tuple[np.ndarray, np.ndarray], after: tuple[np.ndarray, np.ndarray], out: Path,
                    seed: int = 0, feature_map: str = "tsne") -> dict:
    """Distances before and after training, and the feature map ``out/feature_map.png`` (2-D by
    ``feature_map``: ``"tsne"``, ``"pca"``, or ``"none"`` for no map)."""
    from threadpoolctl import threadpool_limits

    from transferkit.report.adapt import feature_map_plot

    b, a = domain_distances(*before, seed=seed), domain_distances(*after, seed=seed)
    if feature_map != "none":
        with threadpool_limits(1):  # t-SNE's threaded gradient loop is many times slower on a busy machine
            feature_map_plot(before, after, out / "feature_map.png", method=feature_map, max_points=MAP_POINTS,
                             max_iter=500, seed=seed)
    return {f"{k}_before": v for k, v in b.items()} | {f"{k}_after": v for k, v in a.items()}
