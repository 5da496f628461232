"""The privacy a DP federated run gives: client-level (epsilon, delta) of its rounds of the Gaussian mechanism.

Each round the server releases the mean of the sampled clients' updates, each clipped to L2 norm C, plus
Gaussian noise of std z C / n (Flower's fixed-clipping wrappers; n clients sampled). Adding or removing one
client's data (client-level adjacency, McMahan et al., "Learning Differentially Private Recurrent Language
Models", ICLR 2018) moves the sum of the updates by at most C, against noise of std z C on that sum: a
Gaussian mechanism with noise multiplier z. Such a mechanism is (1/z)-GDP, and T adaptive rounds compose to
(sqrt(T)/z)-GDP (Dong, Roth & Su, "Gaussian Differential Privacy", JRSS-B 2022, Theorem 2.7 and Corollary 3.3),
whose (epsilon, delta) curve is exact (Corollary 2.13; the analytic Gaussian mechanism of Balle & Wang, ICML
2018). With fewer clients sampled than there are (``fraction_fit`` < 1), sampling only lowers the privacy loss;
its amplification is not counted here, so the epsilon is then an upper bound.
"""

from __future__ import annotations

import math

from scipy.optimize import brentq
from scipy.stats import norm

from transferkit.errors import TransferkitError


def gdp_delta(epsilon: float, mu: float) -> float:
    """delta(epsilon) of mu-GDP: ``Phi(-eps/mu + mu/2) - exp(eps) Phi(-eps/mu - mu/2)`` (Dong et al., Cor. 2.13),
    the second term in log space so that a large epsilon does not overflow."""
    return float(norm.cdf(-epsilon / mu + mu / 2) - math.exp(epsilon + norm.logcdf(-epsilon / mu - mu / 2)))


def gaussian_epsilon(noise_multiplier: float, rounds: int, delta: float) -> float:
    """The smallest epsilon for which ``rounds`` compositions of the Gaussian mechanism with noise multiplier
    ``noise_multiplier`` (noise std over sensitivity) are (epsilon, delta)-DP: mu = sqrt(rounds) / z, then
    delta(epsilon) = ``delta`` solved for epsilon (0 when delta(0) is already below it; inf without noise).

    Example:
        >>> round(gaussian_epsilon(1.0, 1, 1e-5), 2)  # one release at noise multiplier 1
        4.38
    """
    if not (isinstance(rounds, int) and rounds >= 1):
        raise TransferkitError(f"gaussian_epsilon: rounds must be an integer >= 1; got {rounds!r}.")
    if not 0.0 < delta < 1.0:
        raise TransferkitError(f"gaussian_epsilon: delta must be in (0, 1); got {delta!r}.")
    if not noise_multiplier >= 0.0:
        raise TransferkitError(f"gaussian_epsilon: noise_multiplier must be >= 0; got {noise_multiplier!r}.")
    if noise_multiplier == 0.0:
        return math.inf
    mu = math.sqrt(rounds) / noise_multiplier
    if gdp_delta(0.0, mu) <= delta:
        return 0.0
    hi = 1.0
    while gdp_delta(hi, mu) > delta:  # delta(epsilon) falls to 0 as epsilon grows
        hi *= 2.0
    return float(brentq(lambda e: gdp_delta(e, mu) - delta, 0.0, hi, xtol=1e-10, rtol=1e-12))


def privacy_spent(noise_multiplier: float, rounds: int, delta: float, fraction_fit: float) -> dict:
    """What a run's summary says of its privacy: epsilon at ``delta`` after ``rounds``, and whether it is exact
    (every client sampled each round) or an upper bound (amplification by sampling not counted)."""
    return {"epsilon": gaussian_epsilon(noise_multiplier, rounds, delta), "delta": delta, "rounds": rounds,
            "epsilon_is": "exact" if fraction_fit >= 1.0 else "an upper bound (amplification by sampling not counted)"}
