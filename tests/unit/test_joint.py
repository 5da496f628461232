import pytest

from transferkit.engine.trainer import Trainer
from transferkit.finetune import Joint, create_strategy
from transferkit.finetune.joint import ramp
from tests.unit.test_strategies import settings, tiny_data, tiny_model


def test_ramp():
    assert [ramp(s, 0.2, 0.6, 4) for s in (0, 2, 4, 9)] == pytest.approx([0.2, 0.4, 0.6, 0.6])
    assert ramp(3, 0.2, 0.6, 0) == 0.6


def test_joint_adds_a_source_head_and_weights_the_two_losses():
    model = tiny_model()
    s = Joint(source=tiny_data(12), weight=0.25)
    history = Trainer(settings(epochs=2), progress=False).fit(model, s, tiny_data())
    assert "source" in model.heads and "train/joint/source" in history[-1]
    assert s.task_weight() == pytest.approx(0.75) and int(s.step) == 2 * 3  # 24 examples / batch 8, 2 epochs


def test_joint_requires_a_source():
    from transferkit.errors import TransferkitError

    with pytest.raises(TransferkitError, match="'source' is required"):
        create_strategy("joint")
