import numpy as np
import pytest
import torch

from transferkit.config import TrainSettings
from transferkit.engine.trainer import Trainer
from transferkit.finetune import Compose, Discriminative, L2SP, PartialFineTune, create_strategy
from transferkit.finetune.functional import bss_penalty, l2sp_penalty, layerwise_lrs
from tests.unit.test_strategies import settings, tiny_data, tiny_model


def test_l2sp_is_zero_at_the_source_weights_and_grows_after_a_nudge():
    model = tiny_model()
    s = L2SP(weight=1.0)
    s.prepare_model(model)
    out = model(tiny_data().x[:4])
    assert float(s.loss_terms(None, out, model)["penalty"].detach()) == 0.0
    with torch.no_grad():
        model.backbone.proj[2].weight.add_(0.1)
    expected = 0.5 * 0.1**2 * model.backbone.proj[2].weight.numel()
    assert float(s.loss_terms(None, out, model)["penalty"].detach()) == pytest.approx(expected, rel=1e-4)


def test_l2sp_penalty_matches_hand_computation():
    assert float(l2sp_penalty([torch.tensor([1.0, 2.0])], [torch.tensor([0.0, 0.0])])) == 5.0


def test_bss_takes_the_smallest_singular_values():
    f = torch.zeros(4, 3)
    f[0, 0], f[1, 1], f[2, 2] = 3.0, 2.0, 1.0
    assert float(bss_penalty(f, k=1)) == pytest.approx(1.0)
    assert float(bss_penalty(f, k=2)) == pytest.approx(5.0)


def test_layerwise_learning_rates_decay_with_depth():
    assert layerwise_lrs(3, 1.0, 0.5) == [0.125, 0.25, 0.5]


def test_partial_keeps_early_stages_bit_identical():
    model = tiny_model()
    stages = model.backbone.stages()
    before = [{k: v.clone() for k, v in st.state_dict().items()} for st in stages]
    Trainer(settings(epochs=2), progress=False).fit(model, PartialFineTune(k=1), tiny_data())
    for st, ref in zip(stages[:-1], before[:-1]):  # weights and BatchNorm statistics untouched
        assert all(torch.equal(v, ref[k]) for k, v in st.state_dict().items())
    assert any(not torch.equal(v, before[-1][k]) for k, v in stages[-1].state_dict().items())


def test_partial_freeze_bn_keeps_batchnorm_of_trained_stages():
    model = tiny_model()
    bn = model.backbone.stages()[-2][1]  # the BatchNorm of the last conv block
    ref = {k: v.clone() for k, v in bn.state_dict().items()}
    Trainer(settings(epochs=2), progress=False).fit(model, PartialFineTune(k=2, freeze_bn=True), tiny_data())
    assert all(torch.equal(v, ref[k]) for k, v in bn.state_dict().items())


def test_gradual_unfreezing_adds_one_stage_per_phase():
    model = tiny_model()
    phases = Discriminative(decay=0.5, gradual=True).phases(model, 10, 1.0)
    n_stages = len(model.backbone.stages())
    assert len(phases) == n_stages + 1 and sum(p.epochs for p in phases) == 10
    counts = [sum(len(g["params"]) for g in p.groups) for p in phases]
    assert counts == sorted(counts) and counts[-1] == len(list(model.parameters()))
    lrs = [g["lr"] for g in phases[-1].groups if g["params"]]
    assert lrs == sorted(lrs) and lrs[-1] == 1.0


def test_composed_strategies_get_their_own_arguments():
    s = create_strategy("partial+l2sp", partial={"k": 2}, l2sp={"weight": 0.5})
    assert isinstance(s, Compose) and s.parts[0].k == 2 and s.parts[1].weight == 0.5


def test_l2sp_with_partial_trains_and_logs_its_penalty():
    model = tiny_model()
    history = Trainer(settings(epochs=2), progress=False).fit(model, create_strategy("partial+l2sp", partial={"k": 2}),
                                                              tiny_data())
    assert history[-1]["train/l2sp/penalty"] > 0 and np.isfinite(history[-1]["train/task"])
