"""Model selection without target labels: IWV, DEV, SND, entropy and choose()."""

import math

import numpy as np
import pytest
import sklearn.linear_model  # noqa: F401  (imported here so that no test pays for it)
import torch

from transferkit.errors import TransferkitError
from transferkit.metrics.selection import (choose, density_ratio, dev_risk, information_maximisation, iwv_risk,
                                           prediction_entropy, snd)


def _h(q):  # binary entropy in nats
    return -q * math.log(q) - (1 - q) * math.log(1 - q)


def test_iwv_by_hand_and_with_unit_weights():
    assert iwv_risk([1.0, 2.0, 3.0], [1.0, 1.0, 1.0]) == pytest.approx(2.0)
    assert iwv_risk([1.0, 2.0, 3.0], [2.0, 0.0, 1.0]) == pytest.approx(5 / 3)


def test_dev_by_hand():
    # L = w * loss = [2, 0, 1, 0]; Cov(L, w) = 1/6 and Var(w) = 1/3 (ddof 1), so eta = -1/2 and
    # DEV = mean(L) + eta * mean(w) - eta = 0.75 - 0.75 + 0.5 = 0.5, where IWV says 0.75.
    losses, w = [1.0, 0.0, 1.0, 0.0], [2.0, 2.0, 1.0, 1.0]
    assert dev_risk(losses, w) == pytest.approx(0.5)
    assert iwv_risk(losses, w) == pytest.approx(0.75)
    assert dev_risk(np.array(losses)[:, None], np.array(w)[:, None]) == pytest.approx(0.5)  # [N, 1] as DEV's code


def test_dev_with_constant_weights_is_the_plain_mean():
    assert dev_risk([1.0, 0.0, 0.0, 1.0, 1.0], [1.0] * 5) == pytest.approx(0.6)
    assert dev_risk([1.0, 0.0, 0.0, 1.0, 1.0], [2.5] * 5) == pytest.approx(0.6)


def test_density_ratio_matches_the_true_ratio_of_two_gaussians():
    rng = np.random.default_rng(0)
    src, tgt = rng.normal(size=(1500, 1)), rng.normal(size=(1500, 1)) + 1.0
    w = density_ratio(src, tgt, np.array([[0.0], [1.0]]))
    np.testing.assert_allclose(w, np.exp([-0.5, 0.5]), rtol=0.1)  # N(1,1)/N(0,1) = exp(x - 1/2)
    more_tgt = density_ratio(src, np.vstack([tgt, tgt]), np.array([[0.0]]))  # priors: n_s / n_t
    assert more_tgt[0] == pytest.approx(np.exp(-0.5), rel=0.1)


def test_iwv_with_equal_domains_is_close_to_the_plain_mean():
    rng = np.random.default_rng(1)
    src, tgt = rng.normal(size=(300, 4)), rng.normal(size=(300, 4))
    losses = rng.uniform(size=100)
    w = density_ratio(src, tgt, src[:100])
    assert np.abs(w - 1).mean() < 0.1
    assert iwv_risk(losses, w) == pytest.approx(losses.mean(), rel=0.02)
    assert dev_risk(losses, w) == pytest.approx(losses.mean(), rel=0.05)


def test_snd_by_hand():
    # normalised rows (1,1)/sqrt2, (1,0), (0,1): cosines s12 = s13 = 1/sqrt2, s23 = 0. With tau = 1,
    # row 1 sees two equal neighbours (ln 2); rows 2 and 3 see softmax(1/sqrt2, 0).
    p = np.array([[0.5, 0.5], [1.0, 0.0], [0.0, 1.0]])
    q = 1 / (1 + math.exp(-1 / math.sqrt(2)))
    assert snd(p, temperature=1.0) == pytest.approx((math.log(2) + 2 * _h(q)) / 3, rel=1e-12)
    # tau = 0.05: rows 2 and 3 now put almost all mass on row 1
    q = 1 / (1 + math.exp(-20 / math.sqrt(2)))
    assert snd(p) == pytest.approx((math.log(2) + 2 * _h(q)) / 3, rel=1e-12)
    assert snd(p, chunk=1) == pytest.approx(snd(p), rel=1e-12)


def test_snd_is_within_the_stated_bound_of_the_reference_form():
    probs = torch.softmax(torch.randn(30, 5, generator=torch.Generator().manual_seed(0)) * 3, 1).double()
    z = torch.nn.functional.normalize(probs)
    mat = (z @ z.T / 0.05).masked_fill(torch.eye(30, dtype=torch.bool), -1 / 0.05)
    q = torch.softmax(mat, 1)
    reference = float(-(q * torch.log(q + 1e-5)).sum(1).mean())  # VisionLearningGroup/SND's form
    assert abs(snd(probs) - reference) <= 29 * 1e-5
    assert snd(probs) != reference


def test_entropy_by_hand():
    assert prediction_entropy([[0.5, 0.5], [1.0, 0.0]]) == pytest.approx(math.log(2) / 2)
    assert prediction_entropy(torch.tensor([[0.2, 0.8]])) == pytest.approx(_h(0.2))


def test_information_maximisation_by_hand():
    p = np.array([[0.9, 0.1], [0.2, 0.8]])
    mean = np.array([0.55, 0.45])
    expected = -(mean * np.log(mean)).sum() + np.mean([(r * np.log(r)).sum() for r in p])
    assert information_maximisation(p) == pytest.approx(expected, abs=1e-12)
    assert information_maximisation(np.eye(3)) == pytest.approx(math.log(3), abs=1e-12)  # confident and even
    collapsed = np.tile([[0.98, 0.01, 0.01]], (4, 1))  # confident, one class: entropy rates it best, IM near 0
    assert information_maximisation(collapsed) == pytest.approx(0.0, abs=1e-12)
    assert prediction_entropy(collapsed) < prediction_entropy(np.full((4, 3), 1 / 3))


def test_scores_refuse_logits_and_bad_shapes():
    with pytest.raises(TransferkitError, match="softmax"):
        snd(np.array([[2.0, -1.0], [0.5, 0.1]]))
    with pytest.raises(TransferkitError, match="at least 2 rows"):
        snd(np.array([[0.5, 0.5]]))
    with pytest.raises(TransferkitError, match="one value per source validation example"):
        iwv_risk([1.0, 2.0], [1.0])
    with pytest.raises(TransferkitError, match=">= 0"):
        dev_risk([1.0, 2.0], [1.0, -1.0])
    with pytest.raises(TransferkitError, match="same width"):
        density_ratio(np.zeros((10, 2)), np.zeros((10, 2)), np.zeros((1, 3)))


def test_choose_follows_each_scores_direction():
    cands = [{"epoch": 1, "dev": 0.30, "iwv": 0.2, "snd": 2.0, "entropy": 0.9},
             {"epoch": 2, "dev": 0.20, "iwv": 0.4, "snd": 3.5, "entropy": 0.5},
             {"epoch": 3, "dev": 0.25, "iwv": 0.1, "snd": 3.0, "entropy": 0.7}]
    assert choose(cands, "dev") == cands[1] | {"selected_by": "dev", "direction": "lower"}
    assert choose(cands, "iwv")["epoch"] == 3
    assert choose(cands, "snd") == cands[1] | {"selected_by": "snd", "direction": "higher"}
    assert choose(cands, "entropy")["epoch"] == 2
    assert choose([{"epoch": 1, "snd": 1.0}, {"epoch": 2, "snd": 1.0}], "snd")["epoch"] == 1  # ties: the first
    assert "selected_by" not in cands[1]  # a copy


def test_choose_rejects_unknown_scores_and_missing_values():
    with pytest.raises(TransferkitError, match="Did you mean 'snd'"):
        choose([{"snd": 1.0}], "sdn")
    with pytest.raises(TransferkitError, match="candidate 1 has no finite 'dev'"):
        choose([{"dev": 1.0}, {"dev": float("nan")}], "dev")
    with pytest.raises(TransferkitError, match="empty"):
        choose([], "dev")
