import pytest

from transferkit.compare import negative_transfer, parse_shots
from transferkit.errors import TransferkitError


def test_parse_shots():
    assert parse_shots("1, 5,all") == [1, 5, None]
    with pytest.raises(TransferkitError, match="got 'x'"):
        parse_shots("1,x")
    with pytest.raises(TransferkitError, match="empty"):
        parse_shots(" , ")


def test_negative_transfer_needs_a_gain_beyond_seed_noise():
    scratch = [80.0, 82.0, 84.0]
    assert negative_transfer([79.0, 80.0, 81.0], scratch)  # worse
    assert negative_transfer([82.0, 83.0, 84.0], scratch)  # +1 with std ~1.6: within noise
    assert not negative_transfer([90.0, 91.0, 92.0], scratch)
