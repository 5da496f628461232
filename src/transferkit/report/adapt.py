"""Domain-adaptation report parts: a 2-D map of source and target features before and after
adaptation, and the table of domain distances (MMD², proxy A-distance) before -> after."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from transferkit.errors import TransferkitError  # noqa: E402
from transferkit.report import save_figure  # noqa: E402

METHODS = ("tsne", "pca")
MARKERS = "o^sDvP*Xh<>p"  # one per class, cycled
COLOURS = {"source": "tab:blue", "target": "tab:orange"}


def _matrix(feats, where: str) -> np.ndarray:
    arr = feats.detach().cpu().numpy() if isinstance(feats, torch.Tensor) else np.asarray(feats)
    if arr.ndim != 2 or len(arr) < 2 or not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
        raise TransferkitError(f"feature_map_plot: {where} must be a finite numeric [N, D] matrix with N >= 2; "
                               f"got shape {arr.shape}.")
    return arr.astype(np.float64)


def _panel(pair, where: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TransferkitError(f"feature_map_plot: '{where}' must be a pair (source features, target features).")
    src, tgt = _matrix(pair[0], f"the source features of '{where}'"), _matrix(pair[1], f"the target features of '{where}'")
    if src.shape[1] != tgt.shape[1]:
        raise TransferkitError(f"feature_map_plot: the source and target features of '{where}' must have the same "
                               f"width; got {src.shape[1]} and {tgt.shape[1]}.")
    return src, tgt


def _labels(classes, panels) -> tuple[np.ndarray, np.ndarray] | None:
    if classes is None:
        return None
    if not isinstance(classes, (tuple, list)) or len(classes) != 2:
        raise TransferkitError("feature_map_plot: 'classes' must be a pair (source labels, target labels) or None.")
    labels = tuple(np.asarray(c).reshape(-1) for c in classes)
    for where, (src, tgt) in panels.items():
        if (len(labels[0]), len(labels[1])) != (len(src), len(tgt)):
            raise TransferkitError(f"feature_map_plot: 'classes' must give one label per row of '{where}' "
                                   f"({len(src)} source, {len(tgt)} target); got {len(labels[0])} and {len(labels[1])}.")
    return labels


def embed_2d(feats: np.ndarray, method: str = "tsne", seed: int = 0, max_iter: int = 1000) -> np.ndarray:
    """Rows of ``feats`` in 2-D: PCA to at most 50 dimensions, then t-SNE (van der Maaten & Hinton,
    2008; perplexity 30, or a third of the rows for small samples; ``max_iter`` >= 250 gradient
    steps, scikit-learn's 1000 by default), or PCA alone.

    Shape:
        feats: ``[N, D]`` -> ``[N, 2]``.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if method not in METHODS:
        raise TransferkitError(f"embed_2d: 'method' must be one of {', '.join(METHODS)}; got {method!r}.")
    feats = np.asarray(feats, dtype=np.float64)
    if feats.shape[1] < 2:
        return np.hstack([feats, np.zeros((len(feats), 2 - feats.shape[1]))])
    k = min(50 if method == "tsne" else 2, feats.shape[1], len(feats))
    if method == "pca" or feats.shape[1] > k:
        feats = PCA(n_components=k, random_state=seed).fit_transform(feats)
    if method == "pca":
        return feats
    perplexity = min(30.0, max(1.0, (len(feats) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                max_iter=max_iter).fit_transform(feats)


def _legend(classes: np.ndarray) -> list:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker="o", color=c, label=d) for d, c in COLOURS.items()]
    return handles + [Line2D([], [], ls="", marker=MARKERS[k % len(MARKERS)], color="grey", label=f"class {c}")
                      for k, c in enumerate(classes[:len(MARKERS)])]


def feature_map_plot(before, after, path: Path, method: str = "tsne", classes=None, max_points: int = 1000,
                     seed: int = 0, titles: tuple[str, str] = ("before adaptation", "after adaptation"),
                     max_iter: int = 1000) -> Path:
    """Two panels, source and target features before and after adaptation, each embedded in 2-D on
    its own (``embed_2d``), coloured by domain and, with ``classes``, one marker per class.

    Args:
        before: ``(src_feats, tgt_feats)`` of the model before adaptation.
        after: the same for the adapted model (usually the same rows).
        path: the PNG to write.
        method: ``"tsne"`` or ``"pca"``.
        classes: optional ``(src_labels, tgt_labels)``, one per row of both panels.
        max_points: rows kept per domain (a seeded draw, the same rows in both panels when they
            have as many).
        seed: the draw's and the embedding's seed.
        titles: the panels' titles.
        max_iter: t-SNE's gradient steps (>= 250); 2 x 1,000 points take tens of seconds on 2 CPU cores.

    Shape:
        before, after: pairs of ``[N_s, D]`` and ``[N_t, D]`` (``D`` may differ between panels).
    """
    if method not in METHODS:
        raise TransferkitError(f"feature_map_plot: 'method' must be one of {', '.join(METHODS)}; got {method!r}.")
    if not isinstance(max_points, int) or max_points < 2:
        raise TransferkitError(f"feature_map_plot: 'max_points' must be an integer >= 2; got {max_points!r}.")
    if not isinstance(max_iter, int) or max_iter < 250:
        raise TransferkitError(f"feature_map_plot: 'max_iter' must be an integer >= 250 (t-SNE's minimum); "
                               f"got {max_iter!r}.")
    panels = {"before": _panel(before, "before"), "after": _panel(after, "after")}
    labels = _labels(classes, panels)
    rng = np.random.default_rng(seed)
    classes_all = np.unique(np.concatenate(labels)) if labels is not None else np.array([])
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    keep: dict[int, np.ndarray] = {}
    for ax, (src, tgt), title in zip(axes, panels.values(), titles):
        idx = [keep.setdefault(n, np.sort(rng.permutation(n)[:max_points])) for n in (len(src), len(tgt))]
        xy = embed_2d(np.vstack([src[idx[0]], tgt[idx[1]]]), method, seed, max_iter)
        for d, (domain, pts) in enumerate((("source", xy[:len(idx[0])]), ("target", xy[len(idx[0]):]))):
            lab = labels[d][idx[d]] if labels is not None else np.zeros(len(pts))
            for k, cls in enumerate(classes_all if labels is not None else [0.0]):
                sel = lab == cls
                ax.scatter(pts[sel, 0], pts[sel, 1], s=9, alpha=0.6, c=COLOURS[domain], marker=MARKERS[k % len(MARKERS)])
        ax.set(title=f"{title} ({method})", xticks=[], yticks=[])
        ax.legend(handles=_legend(classes_all), fontsize=8)
    return save_figure(fig, path)


def _cell(before, after) -> str:
    known = lambda v: v is not None and not (isinstance(v, float) and math.isnan(v))  # noqa: E731
    if known(before) and known(after):
        return f"{before:.3f} → {after:.3f}"
    return f"{before:.3f} → n/a" if known(before) else (f"n/a → {after:.3f}" if known(after) else "n/a")


def domain_distance_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the domain-distance table, one row per method: MMD² and proxy A-distance
    before → after adaptation (lower after = closer domains), "n/a" where a value is missing.

    Each row is ``{"name": ..., "mmd_before": ..., "mmd_after": ..., "pad_before": ..., "pad_after": ...}``;
    the result goes to ``write_html`` as ``(caption, headers, cells)`` or to ``markdown_table``.
    """
    if not isinstance(rows, list) or any(not isinstance(r, dict) or "name" not in r for r in rows):
        raise TransferkitError("domain_distance_table: 'rows' must be a list of dicts, each with a 'name'.")
    headers = ["method", "MMD² before → after", "PAD before → after"]
    return headers, [[str(r["name"]), _cell(r.get("mmd_before"), r.get("mmd_after")),
                      _cell(r.get("pad_before"), r.get("pad_after"))] for r in rows]


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured markdown table (names left-aligned, values right-aligned)."""
    esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in headers) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(headers) - 1)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows])
