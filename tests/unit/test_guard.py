"""The negative-transfer guard's paired test, on hand-computed validation rows."""

import math

import numpy as np
import pytest

from transferkit.data.splits import make_splits
from transferkit.errors import TransferkitError
from transferkit.select.guard import Z, beyond_noise, guard_warning, paired_guard, seed_quantile


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


def test_few_seeds_need_students_t_not_the_normal_quantile():
    # Two seeds, gains 5 and 15 points on 10,000 rows each: mean 10, seed error std([5, 15]) / sqrt(2) = 5;
    # t_{0.95, 1} = 6.314, so the gain must exceed 31.6 points; 1.645 * 5 = 8.2 would have called it better
    n = 10_000
    rng = np.random.default_rng(0)
    trans = [(rng.random(n) < g).astype(float) for g in (0.05, 0.15)]
    res = paired_guard(trans, [np.zeros(n), np.zeros(n)])
    assert res.difference == pytest.approx(0.10, abs=0.01) and res.se == pytest.approx(0.05, abs=0.01)
    assert seed_quantile(2) == pytest.approx(6.3138, abs=1e-4) and seed_quantile(3) == pytest.approx(2.9200, abs=1e-4)
    assert res.margin == pytest.approx(seed_quantile(2) * res.se) and not res.better
    assert seed_quantile(1) == Z  # one seed: no spread to estimate, the row error alone


def test_beyond_noise_on_per_seed_accuracies_by_hand():
    base = [80.0, 82.0, 84.0]  # mean 82, s^2 = 4
    # +9: se sqrt(1/3 + 4/3) = 1.291, t_{0.95, 2} * 1.291 = 3.77 < 9
    assert beyond_noise([90.0, 91.0, 92.0], base)
    # +3: 3 < 3.77 (with 1.645 it would have counted: 2.12)
    assert not beyond_noise([84.0, 85.0, 86.0], base)
    assert not beyond_noise([82.0], [82.0]) and beyond_noise([82.5], [82.0])  # one seed: any gain
    with pytest.raises(TransferkitError, match="at least one accuracy"):
        beyond_noise([], base)


def test_the_guard_never_compares_on_the_rows_a_run_picks_its_epoch_on(tiny_npz):
    from tests.conftest import tiny_config
    from transferkit.api import split_data
    from transferkit.config import parse_config
    from transferkit.runs.guard import guard_rows

    cfg = parse_config(tiny_config(tiny_npz))
    assert cfg.train.restore_best and cfg.data.val_fraction > 0
    assert split_data(cfg)[3] is None  # no guard rows asked for: none, not the validation split
    cfg, note = guard_rows(cfg)
    _, val, test, guard = split_data(cfg)
    assert note and "never used to pick an epoch" in note and len(guard) > 0
    rows = set(np.asarray(guard.indices).tolist())
    assert not rows & set(np.asarray(val.indices).tolist()) and not rows & set(np.asarray(test.indices).tolist())
