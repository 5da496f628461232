"""Scores that choose an epoch or a hyper-parameter for domain adaptation without target labels.

Two estimate the target risk from labelled source validation data reweighted by the density ratio
``w(x) = p_t(x) / p_s(x)`` (IWV, DEV; lower is better); three read only the target predictions (SND
and information maximisation: higher is better; entropy: lower is better). ``choose`` picks a candidate by one of them.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import torch

from transferkit.errors import TransferkitError, unknown_name

RATIO_CS = tuple(10.0 ** k for k in range(-3, 4))  # inverse regularisation strengths tried for the domain classifier
DIRECTIONS = {"iwv": "lower", "dev": "lower", "snd": "higher", "entropy": "lower", "im": "higher"}  # which way each score is better


def _vector(values, name: str) -> np.ndarray:
    arr = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    arr = arr.astype(np.float64).reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr.astype(np.float64)
    if arr.ndim != 1 or len(arr) == 0 or not np.isfinite(arr).all():
        raise TransferkitError(f"'{name}' must be a non-empty vector of finite numbers (one per source validation "
                               f"example); got shape {arr.shape}.")
    return arr


def _losses_weights(losses, weights, name: str) -> tuple[np.ndarray, np.ndarray]:
    loss, w = _vector(losses, "losses"), _vector(weights, "weights")
    if loss.shape != w.shape:
        raise TransferkitError(f"{name}: 'losses' and 'weights' need one value per source validation example each; "
                               f"got {len(loss)} and {len(w)}.")
    if (w < 0).any():
        raise TransferkitError(f"{name}: the importance 'weights' must be >= 0; got a minimum of {w.min():g}.")
    return loss, w


def _features(feats, name: str, min_rows: int) -> np.ndarray:
    arr = feats.detach().cpu().numpy() if isinstance(feats, torch.Tensor) else np.asarray(feats)
    if arr.ndim != 2 or len(arr) < min_rows or not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
        raise TransferkitError(f"density_ratio: '{name}' must be a finite numeric [N, D] matrix with at least {min_rows} "
                               f"row(s); got shape {arr.shape}.")
    return arr.astype(np.float64)


def density_ratio(src_feats, tgt_feats, query_feats, seed: int = 0, cs: Sequence[float] = RATIO_CS) -> np.ndarray:
    """Importance weights ``w(x) = p_t(x) / p_s(x)`` from a domain classifier (Bickel et al., 2007;
    as DEV, You et al., 2019): ``w = (n_s / n_t) P(t|x) / P(s|x)``.

    The classifier is a logistic regression on standardised features. Its C is chosen by the
    log-loss on a held-out fifth of the pooled sample (DEV's reference code picks an MLP's weight
    decay by accuracy; the log-loss judges the probabilities, which is what ``w`` uses), then it is
    refitted on all rows. ``w`` is computed in log space (``log w = log(n_s/n_t) + logit``).

    Args:
        src_feats: source features (those of the training data).
        tgt_feats: target features.
        query_feats: the rows to weigh (the source validation examples).
        seed: the split's seed.
        cs: inverse regularisation strengths tried.

    Shape:
        src_feats: ``[N_s, D]``; tgt_feats: ``[N_t, D]``; query_feats: ``[N_v, D]`` -> ``[N_v]``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    src, tgt = _features(src_feats, "src_feats", 5), _features(tgt_feats, "tgt_feats", 5)
    query = _features(query_feats, "query_feats", 1)
    if not src.shape[1] == tgt.shape[1] == query.shape[1]:
        raise TransferkitError(f"density_ratio: the source, target and query features must have the same width; "
                               f"got {src.shape[1]}, {tgt.shape[1]} and {query.shape[1]}.")
    x, y = np.vstack([src, tgt]), np.repeat([0, 1], [len(src), len(tgt)])  # 1 = target
    build = lambda c: make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))  # noqa: E731
    xa, xb, ya, yb = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    scores = [log_loss(yb, build(c).fit(xa, ya).predict_proba(xb)[:, 1], labels=[0, 1]) for c in cs]
    clf = build(cs[int(np.argmin(scores))]).fit(x, y)
    return np.exp(np.log(len(src) / len(tgt)) + clf.decision_function(query))


def iwv_risk(losses, weights) -> float:
    """Importance-weighted validation risk (Sugiyama et al., 2007): ``mean_i w_i * loss_i`` over the
    labelled source validation examples, an unbiased estimate of the target risk when ``w`` is the
    true density ratio.

    Shape:
        losses: ``[N]`` (per-example loss or 0/1 error); weights: ``[N]``.
    """
    loss, w = _losses_weights(losses, weights, "iwv_risk")
    return float(np.mean(w * loss))


def dev_risk(losses, weights) -> float:
    """Deep embedded validation risk (You et al., 2019): the IWV risk with ``w`` as a control variate.

    With ``L = w * loss``: ``eta = -Cov(L, w) / Var(w)`` (sample estimates) and
    ``risk = mean(L) + eta * mean(w) - eta``, which uses ``E[w] = 1`` to cancel part of the variance
    of the weighted mean. When all weights are equal, ``eta`` is 0/0; the value returned is then
    ``mean(loss)``, the limit of the formula as the spread of ``w`` (independent of the loss) goes
    to 0 (for ``w = 1`` it is also the IWV risk); DEV's reference code returns NaN there.

    Shape:
        losses: ``[N]`` (per-example loss or 0/1 error); weights: ``[N]``.
    """
    loss, w = _losses_weights(losses, weights, "dev_risk")
    if len(w) < 2 or np.ptp(w) <= 1e-12 * max(1.0, float(np.abs(w).max())):
        return float(loss.mean())
    weighted = w * loss
    eta = -np.cov(weighted, w)[0, 1] / np.var(w, ddof=1)
    return float(weighted.mean() + eta * w.mean() - eta)


def _probabilities(probs, name: str) -> torch.Tensor:
    p = probs.detach().cpu() if isinstance(probs, torch.Tensor) else torch.as_tensor(np.asarray(probs))
    p = p.to(torch.float64)
    if p.dim() != 2 or len(p) == 0 or p.shape[1] < 2:
        raise TransferkitError(f"{name}: 'probs' must be an [N, C] matrix of class probabilities with C >= 2; "
                               f"got shape {tuple(p.shape)}.")
    if not torch.isfinite(p).all() or (p < 0).any() or not torch.allclose(p.sum(1), torch.ones(len(p), dtype=p.dtype),
                                                                           atol=1e-3):
        raise TransferkitError(f"{name}: the rows of 'probs' must be probabilities (>= 0, summing to 1); "
                               "pass softmax(logits), not the logits.")
    return p


def prediction_entropy(probs) -> float:
    """Mean entropy (nats) of the target predictions, ``mean_i -sum_c p_ic log p_ic``; lower means more
    confident predictions (the entropy criterion compared by Saito et al., 2021).

    Shape:
        probs: ``[N, C]`` softmax outputs.
    """
    p = _probabilities(probs, "prediction_entropy")
    return float(-torch.special.xlogy(p, p).sum(1).mean())


def information_maximisation(probs) -> float:
    """Mutual information between the target inputs and the predicted class, estimated from the target
    predictions: ``H(mean_i p_i) - mean_i H(p_i)`` (nats); higher is better. Confident predictions
    (low mean entropy) score high only when the classes are also used evenly, so a model that has
    collapsed onto a few classes scores low where the entropy criterion rates it best (Gomes, Krause
    and Perona, 2010; the IM validation score of Musgrave et al., 2022, "Benchmarking Validation
    Methods for Unsupervised Domain Adaptation").

    Shape:
        probs: ``[N, C]`` softmax outputs.
    """
    p = _probabilities(probs, "information_maximisation")
    mean = p.mean(0)
    return float(-torch.special.xlogy(mean, mean).sum() + torch.special.xlogy(p, p).sum(1).mean())


def snd(probs, temperature: float = 0.05, chunk: int = 1024) -> float:
    """Soft neighbourhood density (Saito et al., 2021, "Tune it the Right Way"); higher is better.

    The softmax outputs are L2-normalised, their cosine similarities divided by ``temperature``, each
    row's similarity to itself removed, and a softmax taken over each row's neighbours; SND is the
    mean entropy of those rows. The reference code (VisionLearningGroup/SND) sets the diagonal to
    ``-1/temperature`` instead of removing it and adds 1e-5 inside the logarithm; here the diagonal is
    left out and the entropy is exact, which differs from it by at most ``(N - 1) * 1e-5``.

    Args:
        probs: target softmax outputs.
        temperature: the similarities' temperature (the paper's 0.05).
        chunk: rows per block (the ``N x N`` similarity matrix is never held whole).

    Shape:
        probs: ``[N, C]`` with ``N >= 2``.
    """
    if not np.isfinite(temperature) or temperature <= 0:
        raise TransferkitError(f"snd: 'temperature' must be a positive number; got {temperature!r}.")
    p = _probabilities(probs, "snd")
    if len(p) < 2:
        raise TransferkitError(f"snd: 'probs' needs at least 2 rows (each row's neighbours are the others); got {len(p)}.")
    z = p / p.norm(dim=1, keepdim=True).clamp_min(1e-12)
    total = 0.0
    for start in range(0, len(z), chunk):
        sim = z[start:start + chunk] @ z.T / temperature
        rows = torch.arange(len(sim))
        sim[rows, rows + start] = float("-inf")
        logq = torch.log_softmax(sim, dim=1)
        total += float(-(logq.exp() * logq.nan_to_num(neginf=0.0)).sum())
    return total / len(z)


def choose(candidates: list[dict], score: str) -> dict:
    """The candidate (an epoch, a hyper-parameter setting) with the best value of ``score``.

    Directions: ``iwv`` and ``dev`` lower is better (estimated target risks), ``snd`` higher,
    ``entropy`` lower. Ties go to the first candidate. Returns a copy of the chosen dict with
    ``selected_by`` (the score's name) and ``direction`` added.

    Example:
        >>> choose([{"epoch": 1, "snd": 2.0}, {"epoch": 2, "snd": 3.5}], "snd")["epoch"]
        2
    """
    if score not in DIRECTIONS:
        raise unknown_name("selection score", score, DIRECTIONS)
    if not candidates:
        raise TransferkitError(f"choose: 'candidates' is empty; give one dict per epoch or setting with a '{score}' value.")
    values = []
    for i, cand in enumerate(candidates):
        value = cand.get(score) if isinstance(cand, dict) else None
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not np.isfinite(value):
            raise TransferkitError(f"choose: candidate {i} has no finite '{score}' value ({value!r}); compute the "
                                   "score for every candidate or leave that candidate out.")
        values.append(float(value))
    sign = 1.0 if DIRECTIONS[score] == "higher" else -1.0
    best = int(np.argmax([sign * v for v in values]))
    return dict(candidates[best]) | {"selected_by": score, "direction": DIRECTIONS[score]}
