import math

import pytest
import torch

from transferkit import train
from transferkit.engine.trainer import Trainer
from transferkit.errors import TransferkitError
from transferkit.finetune import KD, create_strategy
from transferkit.finetune.functional import kd_loss
from tests.conftest import tiny_config
from tests.unit.test_strategies import settings, tiny_data, tiny_model


def test_kd_loss_is_zero_for_identical_logits_and_matches_hand_computation():
    z = torch.tensor([[1.0, 2.0, 3.0]])
    assert float(kd_loss(z, z, 2.0)) == pytest.approx(0.0, abs=1e-7)
    s, t = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])  # teacher probs 3/4, 1/4 at T=1
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert float(kd_loss(s, t, 1.0)) == pytest.approx(expected, rel=1e-5)


def test_kd_loss_at_a_temperature_above_one_carries_hintons_t_squared_factor():
    # T = 2: the teacher's logits (log 9, 0) soften to (log 3, 0) -> probabilities 3/4, 1/4; the student's are 1/2, 1/2
    s = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    t = torch.tensor([[math.log(9.0), 0.0], [math.log(9.0) + 2.0, 2.0]])  # a shift leaves the softmax unchanged
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert float(kd_loss(s, t, 2.0)) == pytest.approx(4.0 * kl, rel=1e-6)  # T^2 KL, the mean over the batch
    assert _kl_at(2.0) == pytest.approx(kl)
    assert float(kd_loss(s, t, 4.0)) == pytest.approx(16.0 * _kl_at(4.0), rel=1e-6)


def _kl_at(T):
    """KL(teacher || student) of the test's first row at temperature T, by hand."""
    p = 9.0 ** (1.0 / T) / (9.0 ** (1.0 / T) + 1.0)
    return p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5)


def test_student_moves_towards_the_teacher():
    teacher = tiny_model(seed=7).eval()
    student = tiny_model(seed=1)
    x = tiny_data().x
    gap = lambda: float(kd_loss(student.eval()(x).logits, teacher(x).logits, 2.0).detach())  # noqa: E731
    before = gap()
    Trainer(settings(epochs=5, lr=0.01), progress=False).fit(student, KD(teacher, temperature=2.0, weight=5.0), tiny_data())
    assert gap() < before


def test_feature_matching_brings_the_feature_similarities_closer():
    from transferkit.finetune.functional import similarity_preserving_loss

    teacher = tiny_model(seed=7)  # a trained teacher, so its features carry the class structure
    Trainer(settings(epochs=15, lr=0.05), progress=False).fit(teacher, create_strategy("full"), tiny_data())
    student = tiny_model(seed=1)
    x = tiny_data().x
    gap = lambda: float(similarity_preserving_loss(student.eval()(x).features, teacher.eval()(x).features).detach())  # noqa: E731
    before = gap()
    history = Trainer(settings(epochs=5, lr=0.01), progress=False).fit(
        student, KD(teacher, weight=0.0, feature_weight=10.0), tiny_data())
    assert "train/kd/features" in history[-1]
    assert gap() < 0.9 * before


def test_transfer_set_adds_imitation_on_unlabelled_inputs():
    teacher = tiny_model(seed=7).eval()
    unlabelled = tiny_data(40)
    history = Trainer(settings(epochs=2), progress=False).fit(
        tiny_model(seed=1), KD(teacher, transfer_set=unlabelled, batch_size=5), tiny_data())
    assert history[-1]["train/kd/transfer_distill"] > 0
    with pytest.raises(TransferkitError, match="'batch_size'"):
        KD(teacher, transfer_set=unlabelled, batch_size=0)


def test_kd_from_a_run_directory(tiny_npz, tmp_path):
    train(tiny_config(tiny_npz), out=tmp_path / "teacher", progress=False)
    cfg = tiny_config(tiny_npz) | {"strategy": {"name": "kd", "args": {"teacher": str(tmp_path / "teacher")}}}
    cfg["model"]["backbone_args"]["hidden"] = [4]  # a smaller student
    res = train(cfg, out=tmp_path / "student", progress=False)
    assert res.history[-1]["train/kd/distill"] >= 0
    import shutil

    from transferkit.api import load_run

    shutil.rmtree(tmp_path / "teacher")  # a distilled student stands on its own
    assert load_run(tmp_path / "student").cfg.strategy.name == "kd"


def test_kd_rejects_a_teacher_with_other_classes():
    from transferkit.backbones import create_backbone
    from transferkit.heads import create_head
    from transferkit.model import TransferModel

    teacher = TransferModel(create_backbone("small_cnn", in_channels=1, width=4, num_features=8), create_head("linear", 8, 5))
    with pytest.raises(TransferkitError, match="teacher predicts 5 classes"):
        Trainer(settings(epochs=1), progress=False).fit(tiny_model(), KD(teacher), tiny_data())
