"""The negative-transfer guard's paired test, on hand-computed validation rows."""

import math

import numpy as np
import pytest

from transferkit.data.splits import make_splits
from transferkit.errors import TransferkitError
from transferkit.select.guard import Z, guard_warning, paired_guard


def test_one_seed_uses_the_standard_error_of_the_paired_differences():
    # d = [0, 1, 1, 0]: mean 0.5, sample variance 1/3, standard error sqrt(1/3 / 4) = 0.2887; 0.5 > 1.645 * 0.2887
    res = paired_guard([np.array([1, 1, 1, 0])], [np.array([1, 0, 0, 0])])
    assert (res.transfer, res.baseline, res.difference) == (0.75, 0.25, 0.5)
    assert res.se == pytest.approx(math.sqrt(1 / 12)) and (res.rows, res.seeds) == (4, 1)
    assert res.better and guard_warning(res, "full", "from scratch") is None


def test_the_seed_spread_counts_when_it_is_larger():
    # seed 0 as above (+0.5), seed 1 identical predictions (0): mean +0.25; row error sqrt(1/12 + 0) / 2 = 0.144,
    # seed error std([0.5, 0]) / sqrt(2) = 0.25 -> se 0.25 and 0.25 < 1.645 * 0.25: within noise
    res = paired_guard([np.array([1, 1, 1, 0]), np.array([1, 0, 1, 0])],
                       [np.array([1, 0, 0, 0]), np.array([1, 0, 1, 0])])
    assert res.difference == pytest.approx(0.25) and res.se == pytest.approx(0.25)
    assert not res.better
    text = guard_warning(res, "full fine-tuning at 3 labels per class", "from scratch")
    assert text == ("Possible negative transfer: full fine-tuning at 3 labels per class is not better than from scratch "
                    "beyond noise on validation data (62.5 % vs 37.5 %, difference +25.0 ± 25.0 points, 4 validation "
                    "rows, 2 seeds); check the source or train without it.")


def test_worse_and_equal_transfer_fire_and_a_clear_gain_does_not():
    rng = np.random.default_rng(0)
    base = (rng.random(200) < 0.6).astype(int)
    assert not paired_guard([base], [base]).better  # no difference at all: se 0, difference 0
    worse = base.copy()
    worse[:40] = 0
    assert not paired_guard([worse], [base]).better
    better = np.ones(200, dtype=int)  # +40 % of the rows: difference 0.4 >> Z * se
    res = paired_guard([better], [base])
    assert res.better and res.difference > Z * res.se


def test_unpaired_or_empty_inputs_are_refused():
    with pytest.raises(TransferkitError, match="one validation array per seed"):
        paired_guard([np.ones(3)], [np.ones(3), np.ones(3)])
    with pytest.raises(TransferkitError, match="same validation rows"):
        paired_guard([np.ones(3)], [np.ones(4)])


def test_guard_rows_are_held_out_of_training_and_test():
    y = np.repeat(np.arange(3), 20)
    plain = make_splits(y, seed=1, test_fraction="rest", shots=2)
    sp = make_splits(y, seed=1, test_fraction="rest", shots=2, guard_fraction=0.1)
    assert len(plain.guard) == 0 and np.bincount(y[sp.guard]).tolist() == [2, 2, 2]
    assert not set(sp.guard) & (set(sp.train) | set(sp.test) | set(sp.val))
    assert len(sp.train) + len(sp.test) + len(sp.guard) == 60
    assert np.bincount(y[sp.train]).tolist() == [2, 2, 2]  # the label budget is untouched
