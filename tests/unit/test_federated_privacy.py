"""The client-level (epsilon, delta) of a DP federated run: Gaussian differential privacy (Dong, Roth & Su,
2022) against an independent integral of the privacy loss, the composition rule, the textbook Gaussian
mechanism's bound and the Renyi-DP bound it must beat."""

import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import norm

from transferkit.errors import TransferkitError
from transferkit.federated.privacy import gaussian_epsilon, gdp_delta, privacy_spent


def _delta_by_integral(epsilon: float, mu: float) -> float:
    """delta(epsilon) = E_P[(1 - exp(epsilon - L))_+] with the privacy loss L ~ N(mu^2/2, mu^2) of the Gaussian
    mechanism (sensitivity 1, noise std 1/mu), integrated numerically."""
    f = lambda l: (1.0 - math.exp(epsilon - l)) * norm.pdf(l, mu**2 / 2, mu)  # noqa: E731
    return quad(f, epsilon, mu**2 / 2 + 40 * mu, limit=200)[0]


@pytest.mark.parametrize("epsilon,mu", [(0.5, 0.5), (1.0, 1.0), (3.0, 2.0), (10.0, 3.0)])
def test_the_gdp_curve_is_the_integral_of_the_privacy_loss(epsilon, mu):
    assert gdp_delta(epsilon, mu) == pytest.approx(_delta_by_integral(epsilon, mu), rel=1e-6, abs=1e-12)


def test_epsilon_solves_the_curve_and_composes_as_one_mechanism_with_sqrt_t_less_noise():
    eps = gaussian_epsilon(1.3, 7, 1e-5)
    assert gdp_delta(eps, math.sqrt(7) / 1.3) == pytest.approx(1e-5, rel=1e-6)
    assert eps == pytest.approx(gaussian_epsilon(1.3 / math.sqrt(7), 1, 1e-5), rel=1e-9)
    assert gaussian_epsilon(2.0, 7, 1e-5) < eps < gaussian_epsilon(1.3, 8, 1e-5)  # more noise / more rounds


def test_epsilon_is_below_the_textbook_and_renyi_bounds():
    # the classic Gaussian mechanism: z = sqrt(2 ln(1.25 / delta)) / eps0 is (eps0, delta)-DP for eps0 < 1
    for eps0 in (0.2, 0.5, 0.9):
        assert gaussian_epsilon(math.sqrt(2 * math.log(1.25 / 1e-5)) / eps0, 1, 1e-5) <= eps0
    # Renyi DP (Mironov, 2017): T alpha / (2 z^2) + log(1 / delta) / (alpha - 1), minimised over alpha
    for z, t in ((0.8, 1), (1.0, 10), (3.0, 100)):
        alphas = np.linspace(1.01, 400, 40000)
        rdp = float(np.min(t * alphas / (2 * z**2) + math.log(1e5) / (alphas - 1)))
        assert gaussian_epsilon(z, t, 1e-5) < rdp


def test_one_release_at_noise_multiplier_one():
    # by hand from the curve: delta(4.37718) = Phi(-3.87718) - e^4.37718 Phi(-4.87718) = 5.284e-5 - 79.61 x 5.381e-7
    assert gaussian_epsilon(1.0, 1, 1e-5) == pytest.approx(4.37718, abs=1e-4)


def test_a_round_with_fewer_replies_than_sampled_voids_the_claim():
    spent = privacy_spent(1.0, 3, 1e-5, 1.0, replies=[5, 4, 5], sampled=5)
    assert spent["epsilon_is"].startswith("void: round 2")
    assert privacy_spent(1.0, 3, 1e-5, 1.0, replies=[5, 5, 5], sampled=5)["epsilon_is"] == "exact"
    # one client's update replaced by another's moves the sum by 2 C: half the noise multiplier
    assert spent["epsilon_replace_one"] == pytest.approx(gaussian_epsilon(0.5, 3, 1e-5))


def test_limits_and_errors():
    assert gaussian_epsilon(0.0, 3, 1e-5) == math.inf
    assert gaussian_epsilon(math.inf, 3, 1e-5) == 0.0
    assert gaussian_epsilon(1e4, 1, 0.5) == 0.0  # delta(0) is already below 0.5
    assert privacy_spent(1.0, 5, 1e-5, 1.0)["epsilon_is"] == "exact"
    assert privacy_spent(1.0, 5, 1e-5, 0.5)["epsilon_is"].startswith("an upper bound")
    for kwargs, match in (({"rounds": 0}, "rounds"), ({"delta": 1.0}, "delta"), ({"noise_multiplier": -1.0}, "noise")):
        with pytest.raises(TransferkitError, match=match):
            gaussian_epsilon(**({"noise_multiplier": 1.0, "rounds": 1, "delta": 1e-5} | kwargs))
