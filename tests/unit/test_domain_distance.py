"""Domain distances: multi-kernel MMD² and the proxy A-distance."""

import numpy as np
import pytest
import sklearn.linear_model  # noqa: F401  (imported here so that no test pays for it)
import torch

from transferkit.errors import TransferkitError
from transferkit.metrics.domain import linear_mmd2, mmd2, proxy_a_distance


def _gauss(n=40, d=6, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_mmd2_is_exactly_zero_for_the_same_sample_and_for_identical_points():
    x = _gauss()
    assert float(mmd2(x, x)) == 0.0
    assert float(mmd2(x.float(), x.float().clone())) == 0.0
    assert float(mmd2(torch.ones(3, 2), torch.ones(5, 2))) == 0.0  # all pooled distances 0: any bandwidth


def test_mmd2_by_hand_on_two_points():
    # x = {0}, y = {1} in 1-D: the only distinct pair has d^2 = 1, so the median is 1 and
    # MMD^2 = 1 + 1 - 2 * mean_u exp(-1 / (2 s_u)).
    scales = (0.5, 2.0)
    expected = 2 - 2 * np.mean([np.exp(-1 / (2 * s)) for s in scales])
    assert float(mmd2(np.zeros((1, 1)), np.ones((1, 1)), scales=scales)) == pytest.approx(expected, rel=1e-12)


def test_mmd2_grows_monotonically_with_a_mean_shift_and_is_symmetric():
    x, y = _gauss(seed=0), _gauss(seed=1)
    values = [float(mmd2(x, y + s)) for s in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)]
    assert all(b > a for a, b in zip(values, values[1:])), values
    assert values[-1] > 10 * values[0]
    for bandwidth in ("median", "mean"):
        assert float(mmd2(x, y + 1, bandwidth=bandwidth)) == pytest.approx(float(mmd2(y + 1, x, bandwidth=bandwidth)),
                                                                         rel=1e-12)
    assert 0.0 <= values[-1] <= 2.0  # averaged kernels


def test_mmd2_is_differentiable_and_its_gradient_pulls_the_samples_together():
    x = _gauss(seed=0)
    y = (_gauss(seed=1) + 1.0).requires_grad_()
    loss = mmd2(x, y)
    loss.backward()
    with torch.no_grad():
        assert float(mmd2(x, y - 0.1 * y.grad / y.grad.norm())) < float(loss)


def test_linear_mmd2_is_the_squared_distance_of_the_means():
    x = np.array([[0.0, 0.0], [2.0, 0.0]])
    y = np.array([[1.0, 3.0], [1.0, 1.0], [1.0, 2.0]])
    assert float(linear_mmd2(x, y)) == pytest.approx(0.0 ** 2 + 2.0 ** 2)  # means (1, 0) and (1, 2)


def test_mmd2_rejects_bad_inputs_with_one_sentence():
    with pytest.raises(TransferkitError, match="same D"):
        mmd2(torch.zeros(3, 2), torch.zeros(3, 4))
    with pytest.raises(TransferkitError, match="'bandwidth'"):
        mmd2(torch.zeros(3, 2), torch.zeros(3, 2), bandwidth="max")
    with pytest.raises(TransferkitError, match="'scales'"):
        mmd2(torch.zeros(3, 2), torch.zeros(3, 2), scales=(1.0, -1.0))


def test_proxy_a_distance_is_near_zero_for_one_gaussian_and_two_for_separated_ones():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(120, 5)), rng.normal(size=(120, 5))
    assert proxy_a_distance(a, b) < 0.3
    assert proxy_a_distance(a, b + 5.0) == pytest.approx(2.0)
    # means 0.5 * sqrt(5) = 1.12 standard deviations apart: Bayes error Phi(-0.56) = 0.29, PAD 0.85
    assert 0.4 < proxy_a_distance(a, b + 0.5) < 1.5


def test_proxy_a_distance_rejects_bad_inputs():
    with pytest.raises(TransferkitError, match="same width"):
        proxy_a_distance(np.zeros((20, 3)), np.zeros((20, 4)))
    with pytest.raises(TransferkitError, match="at least 8 rows"):
        proxy_a_distance(np.zeros((4, 3)), np.zeros((20, 3)))
    with pytest.raises(TransferkitError, match="NaN"):
        proxy_a_distance(np.full((10, 3), np.nan), np.zeros((20, 3)))
