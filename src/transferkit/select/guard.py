"""Negative-transfer guard: is a transferred model better than its baseline beyond noise?

Negative transfer is a transfer result that is no better (or worse) than what the target data alone,
or the source alone, give (Rosenstein et al., "To transfer or not to transfer", NIPS 2005 workshop;
Wang et al., "Characterizing and Avoiding Negative Transfer", CVPR 2019, who measure it as the gap to
the target-only baseline). The guard measures that gap on labelled *validation* rows of the target,
never on the test set, so acting on it (dropping the source) does not tune on test data.

The comparison is paired: the transfer run and the baseline of one seed are scored on the same
validation rows, so the per-row differences ``d_i = correct_T(i) - correct_B(i)`` carry the noise of
the validation sample (McNemar's setting; the standard error of a mean of paired differences). With
several seeds, the per-seed mean differences ``D_s`` also carry the training noise (initialisation,
k-shot draw); their standard error is ``std(D_s) / sqrt(S)``. The transfer is better when its mean
gain clears both: ``mean(D_s) > Z * se_rows`` (a one-sided normal test at the 5 % level on the rows)
and ``mean(D_s) > t_{0.95, S-1} * se_seeds`` (Student's t with S - 1 degrees of freedom: an error
estimated from two or three seeds is itself noisy, 6.31 and 2.92 standard errors instead of 1.645).
``beyond_noise`` applies the same rule to per-seed accuracies alone (no per-row record).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from transferkit.errors import TransferkitError

Z = 1.645  # one-sided 95 % normal quantile: "better beyond noise" means the gain exceeds Z standard errors


@dataclass(frozen=True)
class GuardResult:
    """The paired comparison of a transfer result with one baseline on validation rows (fractions in [0, 1])."""

    transfer: float  # mean validation accuracy of the transfer runs
    baseline: float  # mean validation accuracy of the baseline runs (same rows, seed by seed)
    difference: float  # mean over seeds of the per-seed paired difference
    se: float  # its standard error: max(row error, seed error)
    rows: int  # validation rows per seed (the smallest)
    seeds: int
    margin: float = 0.0  # the gain needed to call it better: max(Z * row error, t_{0.95, S-1} * seed error)

    @property
    def better(self) -> bool:
        """Whether the transfer's gain clears ``margin`` (see the module docstring)."""
        return self.difference > self.margin


def seed_quantile(seeds: int) -> float:
    """The one-sided 95 % quantile for an error estimated from ``seeds`` per-seed values: Student's t with
    ``seeds - 1`` degrees of freedom (``Z`` when there is no seed spread to estimate, one seed)."""
    return float(stats.t.ppf(0.95, seeds - 1)) if seeds > 1 else Z


def beyond_noise(transfer: list[float], baseline: list[float]) -> bool:
    """Whether the mean of ``transfer`` (one accuracy per seed) beats that of ``baseline`` beyond seed noise:
    the gain exceeds ``t_{0.95, n-1}`` standard errors of the difference ``sqrt(s_t^2/n_t + s_b^2/n_b)``,
    with ``n`` the smaller number of seeds. One seed each: any gain above 0."""
    t, b = np.asarray(transfer, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if len(t) == 0 or len(b) == 0:
        raise TransferkitError("beyond_noise needs at least one accuracy for the transfer and for the baseline.")
    var = (t.var(ddof=1) / len(t) if len(t) > 1 else 0.0) + (b.var(ddof=1) / len(b) if len(b) > 1 else 0.0)
    return bool(t.mean() - b.mean() > seed_quantile(min(len(t), len(b))) * math.sqrt(var))


def paired_guard(transfer: list[np.ndarray], baseline: list[np.ndarray]) -> GuardResult:
    """Compare per-row validation correctness of transfer and baseline runs, seed by seed.

    Args:
        transfer: one array per seed, 1 where the transfer run's prediction of a validation row is right.
        baseline: the baseline's arrays, same seeds and rows in the same order.

    Returns:
        The accuracies, the mean paired difference and its standard error (see the module docstring).

    Shape:
        each array ``[n_s]`` with ``n_s >= 2``; ``transfer[s]`` and ``baseline[s]`` of the same length.
    """
    if not transfer or len(transfer) != len(baseline):
        raise TransferkitError(f"paired_guard needs one validation array per seed for both runs; got "
                               f"{len(transfer)} and {len(baseline)} seeds.")
    t = [np.asarray(a, dtype=np.float64).ravel() for a in transfer]
    b = [np.asarray(a, dtype=np.float64).ravel() for a in baseline]
    if any(len(x) != len(y) or len(x) < 2 for x, y in zip(t, b)):
        raise TransferkitError("paired_guard needs the same validation rows (at least 2) for transfer and baseline "
                               f"in every seed; got {[len(x) for x in t]} and {[len(y) for y in b]} rows.")
    d = [x - y for x, y in zip(t, b)]
    per_seed = np.array([di.mean() for di in d])
    s = len(d)
    se_rows = math.sqrt(sum(di.var(ddof=1) / len(di) for di in d)) / s
    se_seeds = float(per_seed.std(ddof=1)) / math.sqrt(s) if s > 1 else 0.0
    return GuardResult(transfer=float(np.mean([x.mean() for x in t])), baseline=float(np.mean([y.mean() for y in b])),
                       difference=float(per_seed.mean()), se=max(se_rows, se_seeds), rows=min(len(x) for x in t),
                       seeds=s, margin=max(Z * se_rows, seed_quantile(s) * se_seeds))


def guard_warning(result: GuardResult, transfer: str, baseline: str) -> str | None:
    """The one-sentence warning when ``transfer`` is not better than ``baseline`` beyond noise, else None.

    Example:
        >>> guard_warning(paired_guard([t0, t1], [b0, b1]), "full fine-tuning at 3 labels per class", "from scratch")
    """
    if result.better:
        return None
    r = result
    seeds = f", {r.seeds} seeds" if r.seeds > 1 else ""
    return (f"Possible negative transfer: {transfer} is not better than {baseline} beyond noise on validation data "
            f"({100 * r.transfer:.1f} % vs {100 * r.baseline:.1f} %, difference {100 * r.difference:+.1f} ± "
            f"{100 * r.se:.1f} points, {r.rows} validation rows{seeds}); check the source or train without it.")
