"""Distances between a source and a target sample of features, as pure functions.

``mmd2`` is differentiable (a loss or a measurement); ``proxy_a_distance`` trains a linear domain
classifier and is a measurement only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from transferkit.errors import TransferkitError

DAN_SCALES = (0.125, 0.25, 0.5, 1.0, 2.0)  # 2^-3 .. 2^1 times the base bandwidth, as Transfer-Learning-Library's DAN
PAD_CS = tuple(10.0 ** k for k in range(-3, 4))  # inverse regularisation strengths tried for the domain classifier


def _pair(x, y, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Two feature matrices as tensors of one floating dtype (numpy input -> float64), checked."""
    x = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float64))
    y = y if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y, dtype=np.float64))
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1] or len(x) == 0 or len(y) == 0:
        raise TransferkitError(f"{name}: the source and target features must be non-empty [N, D] matrices with the "
                               f"same D; got shapes {tuple(x.shape)} and {tuple(y.shape)}.")
    dtype = torch.promote_types(x.dtype, y.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    return x.to(dtype), y.to(dtype)


def _sqdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances ``[len(a), len(b)]`` (clamped at 0 against round-off)."""
    d = a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1)[None, :] - 2.0 * a @ b.T
    return d.clamp_min(0.0)


def _base_bandwidth(dxx: torch.Tensor, dyy: torch.Tensor, dxy: torch.Tensor, kind: str) -> torch.Tensor:
    """The median (or mean) squared distance over the distinct pairs of the pooled sample, detached."""
    off = lambda d: d[~torch.eye(len(d), dtype=torch.bool, device=d.device)]  # noqa: E731
    pairs = torch.cat([off(dxx.detach()), off(dyy.detach()), dxy.detach().reshape(-1)])
    base = pairs.median() if kind == "median" else pairs.mean()
    if base <= 0:  # more than half the pairs coincide: fall back to the mean; all equal: any bandwidth gives 0
        base = pairs.mean() if pairs.mean() > 0 else torch.ones((), dtype=pairs.dtype, device=pairs.device)
    return base


def mmd2(x, y, scales: Sequence[float] = DAN_SCALES, bandwidth: str = "median") -> torch.Tensor:
    """Squared maximum mean discrepancy with a multi-kernel Gaussian kernel (Gretton et al., 2012;
    the multi-kernel form of DAN, Long et al., 2015).

    ``k(a, b) = 1/m sum_u exp(-||a - b||^2 / (2 s_u g))``, with ``g`` the median (or mean) squared
    distance over the distinct pairs of the pooled sample (the median heuristic) and ``s_u`` the
    ``scales``. The kernels are averaged (DAN's weights ``beta_u = 1/m``, which sum to 1), so the value
    lies in ``[0, 2]``; Transfer-Learning-Library and jindongwang/transferlearning sum them instead
    (``m`` times larger). The biased V-statistic
    ``mean K_xx + mean K_yy - 2 mean K_xy`` is >= 0 and exactly 0 for ``mmd2(x, x)``. The bandwidth
    is detached, so gradients flow only through the kernel values.

    Args:
        x: source features (tensor or array; numpy input is computed in float64).
        y: target features.
        scales: multiples of the base bandwidth, one Gaussian kernel each.
        bandwidth: ``"median"`` or ``"mean"`` of the pooled pairwise squared distances.

    Returns:
        A 0-dim tensor (differentiable in ``x`` and ``y``).

    Shape:
        x: ``[N, D]``; y: ``[M, D]``.

    Example:
        >>> float(mmd2(torch.zeros(4, 2), torch.zeros(4, 2)))
        0.0
    """
    if bandwidth not in ("median", "mean"):
        raise TransferkitError(f"mmd2: 'bandwidth' must be 'median' or 'mean'; got {bandwidth!r}.")
    if not scales or any(not np.isfinite(s) or s <= 0 for s in scales):
        raise TransferkitError(f"mmd2: 'scales' must be a non-empty list of positive numbers; got {list(scales)}.")
    x, y = _pair(x, y, "mmd2")
    dxx, dyy, dxy = _sqdist(x, x), _sqdist(y, y), _sqdist(x, y)
    base = _base_bandwidth(dxx, dyy, dxy, bandwidth)
    widths = 2.0 * base * torch.as_tensor(scales, dtype=x.dtype, device=x.device)[:, None, None]
    kernel = lambda d: torch.exp(-d[None] / widths).mean(0)  # noqa: E731
    # identical inputs give bitwise-identical blocks, so a + a - 2a is exactly 0
    return kernel(dxx).mean() + kernel(dyy).mean() - 2.0 * kernel(dxy).mean()


def linear_mmd2(x, y) -> torch.Tensor:
    """Squared MMD with the linear kernel: ``||mean(x) - mean(y)||^2`` (Gretton et al., 2012).

    Shape:
        x: ``[N, D]``; y: ``[M, D]`` -> 0-dim tensor.
    """
    x, y = _pair(x, y, "linear_mmd2")
    delta = x.mean(0) - y.mean(0)
    return delta @ delta


def _array(feats, name: str) -> np.ndarray:
    arr = feats.detach().cpu().numpy() if isinstance(feats, torch.Tensor) else np.asarray(feats)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise TransferkitError(f"proxy_a_distance: '{name}' must be a numeric [N, D] matrix; got shape {arr.shape}.")
    if len(arr) < 8:
        raise TransferkitError(f"proxy_a_distance: '{name}' needs at least 8 rows (half trains the classifier, "
                               f"two quarters choose C and measure the error); got {len(arr)}.")
    if not np.isfinite(arr).all():
        raise TransferkitError(f"proxy_a_distance: '{name}' contains NaN or infinite values; drop those rows first.")
    return arr.astype(np.float64)


def _errors(train, held: list, cs: Sequence[float], seed: int) -> np.ndarray:
    """Error of a standardised logistic regression (one per C) on each held-out part: ``[len(cs), len(held)]``.

    The features are standardised once (on the training part) and the Cs are fitted in increasing order,
    each starting from the previous solution (the regularisation path): the same convex problems, solved
    to the same tolerance, in about half the time."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train[0])
    x_train, held = scaler.transform(train[0]), [(scaler.transform(x), y) for x, y in held]
    clf = LogisticRegression(max_iter=2000, random_state=seed, warm_start=True)
    out = np.empty((len(cs), len(held)))
    for i in np.argsort(cs, kind="stable"):
        clf.set_params(C=cs[i]).fit(x_train, train[1])
        out[i] = [np.mean(clf.predict(x) != y) for x, y in held]
    return out


def proxy_a_distance(src_feats, tgt_feats, seed: int = 0, cs: Sequence[float] = PAD_CS,
                     max_per_domain: int = 5000) -> float:
    """Proxy A-distance ``2 (1 - 2 eps)`` (Ben-David et al., 2007; Ganin et al., 2016), clipped to ``[0, 2]``.

    ``eps`` is the test error of a linear classifier (standardised features, logistic regression)
    trained to tell the domains apart. Both domains are subsampled to the same size (at most
    ``max_per_domain``, seeded) and shuffled; half of each trains the classifier. The DANN paper's
    code then reports the lowest error over its C grid on the other half, which selects on the test
    data and biases the distance upwards; here the other half is split into two quarters, C is
    chosen on one and the error measured on the other, both ways round, and ``eps`` is the mean of
    the two errors. 0: the classifier does no better than chance; 2: it separates the domains.

    Args:
        src_feats: source features.
        tgt_feats: target features (same width).
        seed: subsampling and splitting seed.
        cs: inverse regularisation strengths tried (chosen on held-out data).
        max_per_domain: rows kept per domain.

    Shape:
        src_feats: ``[N, D]``; tgt_feats: ``[M, D]``.
    """
    src, tgt = _array(src_feats, "src_feats"), _array(tgt_feats, "tgt_feats")
    if src.shape[1] != tgt.shape[1]:
        raise TransferkitError(f"proxy_a_distance: the source and target features must have the same width; "
                               f"got {src.shape[1]} and {tgt.shape[1]}.")
    if not cs or any(not np.isfinite(c) or c <= 0 for c in cs):
        raise TransferkitError(f"proxy_a_distance: 'cs' must be a non-empty list of positive numbers; got {list(cs)}.")
    if not isinstance(max_per_domain, int) or max_per_domain < 8:
        raise TransferkitError(f"proxy_a_distance: 'max_per_domain' must be an integer >= 8; got {max_per_domain!r}.")
    rng = np.random.default_rng(seed)
    n = min(len(src), len(tgt), max_per_domain)
    src, tgt = src[rng.permutation(len(src))[:n]], tgt[rng.permutation(len(tgt))[:n]]
    half, quarter = n // 2, n // 2 + (n - n // 2) // 2
    part = lambda lo, hi: (np.vstack([src[lo:hi], tgt[lo:hi]]), np.repeat([0, 1], hi - lo))  # noqa: E731
    errors = _errors(part(0, half), [part(half, quarter), part(quarter, n)], cs, seed)
    eps = 0.5 * (errors[errors[:, 0].argmin(), 1] + errors[errors[:, 1].argmin(), 0])
    return float(np.clip(2.0 * (1.0 - 2.0 * eps), 0.0, 2.0))
