import copy

import pytest
import torch

from transferkit.engine.trainer import Trainer
from transferkit.finetune import PartialFineTune
from transferkit.metrics import linear_cka, relative_change
from transferkit.report.transfer import what_transferred
from tests.unit.test_strategies import settings, tiny_data, tiny_model


def test_cka_of_a_representation_with_itself_is_one():
    x = torch.randn(32, 6)
    assert linear_cka(x, x) == pytest.approx(1.0)
    q, _ = torch.linalg.qr(torch.randn(6, 6))
    assert linear_cka(x, 3.0 * x @ q) == pytest.approx(1.0)  # invariant to rotation and scale
    assert linear_cka(x, torch.randn(32, 6)) < 0.6


def test_relative_change():
    assert relative_change(torch.tensor([3.0, 4.0]), torch.tensor([3.0, 4.0])) == 0.0
    assert relative_change(torch.tensor([0.0, 0.0]), torch.tensor([3.0, 4.0])) == 1.0


def test_frozen_stages_show_no_change_and_full_similarity():
    model = tiny_model()
    source = copy.deepcopy(model.backbone)
    Trainer(settings(epochs=2, lr=0.05), progress=False).fit(model, PartialFineTune(k=1), tiny_data())
    rows = what_transferred(source, model.backbone, tiny_data().x)
    assert [r["weight_change"] for r in rows[:-1]] == [0.0] * (len(rows) - 1)
    assert all(r["cka"] == pytest.approx(1.0) for r in rows[:-1])
    assert rows[-1]["weight_change"] > 0


def test_cka_gram_form_for_wide_features_matches_the_feature_form():
    torch.manual_seed(0)
    x, y = torch.randn(6, 4), torch.randn(6, 5)
    wide_x, wide_y = torch.cat([x, torch.zeros(6, 40)], 1), torch.cat([y, torch.zeros(6, 40)], 1)  # same CKA, wide
    assert linear_cka(wide_x, wide_y) == pytest.approx(linear_cka(x, y), rel=1e-9)
    assert linear_cka(wide_x, wide_x) == pytest.approx(1.0)
