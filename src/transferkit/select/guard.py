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
k-shot draw); their standard error is ``std(D_s) / sqrt(S)``. The guard takes the larger of the two
standard errors (the seed spread of two or three seeds is itself noisy; the row error is a floor) and
calls the transfer better when ``mean(D_s) > Z * se``: a one-sided normal test at the 5 % level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

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

    @property
    def better(self) -> bool:
        """Whether the transfer beats the baseline by more than ``Z`` standard errors."""
        return self.difference > Z * self.se


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
                       seeds=s)


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
