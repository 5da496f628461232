"""The privacy a DP federated run gives: client-level (epsilon, delta) of the global models its rounds release.

Each round the server releases the global model plus the mean of the n sampled clients' updates, each clipped to
L2 norm C, with Gaussian noise of std z C / n added (Flower's fixed-clipping wrappers: noise of std z C on the
sum of the clipped updates). Neighbouring datasets differ in one client's data, with the roster and the cohort
size n fixed and public (zero-out adjacency: that client's clipped update replaced by zero, the fixed-denominator
setting of McMahan et al., "Learning Differentially Private Recurrent Language Models", ICLR 2018): the sum moves
by at most C against noise of std z C, a Gaussian mechanism with noise multiplier z. It is (1/z)-GDP, and T
adaptive rounds compose to (sqrt(T)/z)-GDP (Dong, Roth & Su, "Gaussian Differential Privacy", arXiv:1905.02383,
JRSS-B 2022: Theorem 2.7, Corollary 3.3), whose (epsilon, delta) curve is exact (Corollary 2.13; Balle & Wang,
ICML 2018, Theorem 8). Replacing one client's update by another's moves the sum by up to 2 C (noise multiplier
z / 2), which is also reported. Which clients a round samples does not depend on the data, so sampling fewer than
all only lowers the loss; its amplification is not counted (the round log names the sampled clients), and the
epsilon is then an upper bound. The guarantee covers the released global models only: the run's summary and
round log also hold each client's label counts and local test accuracies, which are not protected.
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
    if math.isinf(noise_multiplier):
        return 0.0
    mu = math.sqrt(rounds) / noise_multiplier
    if gdp_delta(0.0, mu) <= delta:
        return 0.0
    hi = 1.0
    while gdp_delta(hi, mu) > delta:  # delta(epsilon) falls to 0 as epsilon grows
        hi *= 2.0
    return float(brentq(lambda e: gdp_delta(e, mu) - delta, 0.0, hi, xtol=1e-10, rtol=1e-12))


def privacy_spent(noise_multiplier: float, rounds: int, delta: float, fraction_fit: float,
                  replies: list[int] | None = None, sampled: int | None = None) -> dict:
    """What a run's summary says of its privacy: epsilon at ``delta`` after ``rounds`` (zero-out adjacency, and
    replace-one), and whether it is exact (every client sampled each round), an upper bound (amplification by
    sampling not counted) or void: a round aggregated fewer training ``replies`` than the ``sampled`` clients the
    noise was calibrated for, so its noise was too small for the stated multiplier."""
    short = [i + 1 for i, m in enumerate(replies or []) if sampled is not None and m < sampled]
    if short:
        status = (f"void: round {short[0]} aggregated fewer replies than the {sampled} sampled clients the noise is "
                  "calibrated for")
    else:
        status = "exact" if fraction_fit >= 1.0 else "an upper bound (amplification by sampling not counted)"
    return {"epsilon": gaussian_epsilon(noise_multiplier, rounds, delta),
            "epsilon_replace_one": gaussian_epsilon(noise_multiplier / 2, rounds, delta), "delta": delta,
            "rounds": rounds, "adjacency": "zero-out (one client's update replaced by zero; roster and cohort fixed)",
            "epsilon_is": status}
