"""``transferkit adapt``: classic (shallow) domain adaptation of one source -> target pair, transductive.

Both domains are read as feature vectors (images flattened, or encoded by a backbone in batches),
preprocessed per domain as the papers did, and one estimator of ``adapt.shallow.SHALLOW`` is fitted
on the labelled source rows and the unlabelled target rows. The target labels are used only to
score: the source-only 1-NN baseline and the adapted method's predictions. With ``out``, the rows
and the settings are written to ``results.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from sklearn.neighbors import KNeighborsClassifier

from transferkit.adapt.shallow import SHALLOW, l2_normalize, surf_zscore
from transferkit.api import prepare_run_dir
from transferkit.backbones import create_backbone
from transferkit.data import load_dataset
from transferkit.errors import TransferkitError

PREPROCESSING = {
    "l2": "each sample to unit L2 norm (the JDA paper's digits protocol)",
    "zscore": "row sums, then a column z-score within each domain (the JDA paper's SURF protocol)",
    "none": "the features as they are",
}
SOURCE_ONLY = "source only"  # the JDA paper's baseline: 1-NN on the source rows


def parse_args(items: list[str] | None) -> dict[str, Any]:
    """``["key=value", ...]`` -> ``{key: value}``, each value read as YAML (numbers, true/false, strings)."""
    args: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise TransferkitError(f"--args '{item}' is not of the form key=value (e.g. n_components=100).")
        if key.strip() in args:
            raise TransferkitError(f"--args names '{key.strip()}' twice; give each argument once.")
        try:
            args[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            args[key.strip()] = value
    return args


def _batches(ds, batch_size: int):
    for i in range(0, len(ds), batch_size):
        j = min(i + batch_size, len(ds))
        if ds.kind == "text":
            yield ds.texts[i:j]
        elif hasattr(ds, "x"):
            yield ds.x[i:j]
        else:
            yield torch.stack([ds[k][0] for k in range(i, j)])


def load_features(spec: str, backbone=None, data_root: str | Path | None = None,
                  batch_size: int = 256) -> tuple[np.ndarray, np.ndarray, list | None]:
    """The rows of dataset ``spec`` as ``[N, D]`` float64 features (flattened, or ``backbone.features``
    in batches, in eval mode), their labels ``[N]`` and the class names (None when unnamed)."""
    ds = load_dataset(spec, data_root)
    if backbone is None:
        if ds.kind == "text":
            raise TransferkitError(f"Dataset '{spec}' holds texts; give --backbone (e.g. hf_text) to encode them.")
        x = torch.cat([b.reshape(len(b), -1) for b in _batches(ds, batch_size)])
    else:
        if backbone.input_kind != ds.kind:
            raise TransferkitError(f"Backbone takes {backbone.input_kind} inputs but dataset '{spec}' holds "
                                   f"{ds.kind} inputs; choose a backbone for {ds.kind} data.")
        backbone.eval()
        with torch.no_grad():
            x = torch.cat([backbone.features(b).reshape(len(b), -1).cpu() for b in _batches(ds, batch_size)])
    names = None if ds.class_names is None else [str(c) for c in ds.class_names]
    return x.double().numpy(), np.asarray(ds.targets).astype(np.int64), names


def preprocess(x: np.ndarray, how: str) -> np.ndarray:
    """One domain's features preprocessed as ``how`` names (see ``PREPROCESSING``)."""
    if how == "l2":
        return l2_normalize(x)
    if how == "zscore":
        return surf_zscore(x)
    return x


def check_pair(xs: np.ndarray, ys: np.ndarray, xt: np.ndarray, yt: np.ndarray, source: str, target: str) -> None:
    """Refuse a pair that cannot be adapted: different feature counts, NaN, target classes the source lacks."""
    if xs.shape[1] != xt.shape[1]:
        raise TransferkitError(f"Source '{source}' has {xs.shape[1]} features but target '{target}' has "
                               f"{xt.shape[1]}; use two domains with the same features (or the same --backbone).")
    for spec, x in ((source, xs), (target, xt)):
        if not np.isfinite(x).all():
            raise TransferkitError(f"The features of '{spec}' contain NaN or infinite values; clean the data first.")
    missing = sorted(set(np.unique(yt).tolist()) - set(np.unique(ys).tolist()))
    if missing:
        raise TransferkitError(f"Target '{target}' has classes {missing} that source '{source}' lacks; "
                               "use a source with every target class.")


def fit_predict(estimator, xs: np.ndarray, ys: np.ndarray, xt: np.ndarray) -> np.ndarray:
    """Fit ``estimator`` on source rows (labelled) + target rows (y = -1, sample_domain -1); the
    target rows' predictions."""
    x = np.vstack([xs, xt])
    y = np.concatenate([ys, np.full(len(xt), -1)])
    sample_domain = np.concatenate([np.ones(len(xs), dtype=int), -np.ones(len(xt), dtype=int)])
    estimator.fit(x, y, sample_domain=sample_domain)
    return np.asarray(estimator.predict(xt, sample_domain=sample_domain[len(xs):]))


def _classifier_name(estimator) -> str:
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else getattr(estimator, "estimator", None)
    final = getattr(final, "base_estimator", final)
    if final is None or getattr(final, "n_neighbors", None) == 1:
        return "1-NN"
    return type(final).__name__


def adapt(method: str, source: str, target: str, *, preprocessing: str = "l2", args: dict | None = None,
          backbone: str | None = None, weights: str | Path | None = None, data_root: str | Path | None = None,
          out: str | Path | None = None, overwrite: bool = False) -> list[dict]:
    """Adapt ``source`` -> ``target`` with shallow method ``method`` (``args`` its arguments); rows
    of the source-only 1-NN baseline and of the method, with their target accuracies (0-1).

    Example:
        >>> rows = adapt("jda", "mnist_usps:usps", "mnist_usps:mnist", args={"lam": 0.1})
    """
    estimator = SHALLOW.build(method, **(args or {}))  # unknown names and arguments fail before any work
    if preprocessing not in PREPROCESSING:
        raise TransferkitError(f"Unknown preprocessing '{preprocessing}'; choose one of {', '.join(PREPROCESSING)}.")
    if weights is not None and backbone is None:
        raise TransferkitError("--weights needs --backbone, the architecture the weights belong to.")
    if out is not None:
        prepare_run_dir(Path(out), overwrite, resume=False)
    net = create_backbone(backbone, weights=weights) if backbone else None
    xs, ys, names_s = load_features(source, net, data_root)
    xt, yt, names_t = load_features(target, net, data_root)
    if names_s and names_t and names_s != names_t:
        raise TransferkitError(f"Source '{source}' and target '{target}' name their classes differently "
                               f"({names_s[:3]}... vs {names_t[:3]}...); give both domains the same classes.")
    check_pair(xs, ys, xt, yt, source, target)
    xs, xt = preprocess(xs, preprocessing), preprocess(xt, preprocessing)
    rows = [_score(SOURCE_ONLY, "1-NN", lambda: KNeighborsClassifier(n_neighbors=1).fit(xs, ys).predict(xt), yt)]
    rows.append(_score(method, _classifier_name(estimator), lambda: fit_predict(estimator, xs, ys, xt), yt))
    if out is not None:
        info = {"method": method, "args": args or {}, "source": source, "target": target,
                "preprocess": preprocessing, "backbone": backbone, "weights": None if weights is None else str(weights),
                "n_source": len(xs), "n_target": len(xt), "n_features": int(xs.shape[1]), "rows": rows}
        (Path(out) / "results.json").write_text(json.dumps(info, indent=1))
    return rows


def _score(name: str, classifier: str, predict, y_true: np.ndarray) -> dict:
    start = time.perf_counter()
    pred = predict()
    return {"method": name, "classifier": classifier, "accuracy": float(np.mean(pred == y_true)),
            "seconds": round(time.perf_counter() - start, 3)}
