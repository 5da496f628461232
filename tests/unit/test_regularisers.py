import copy

import numpy as np
import pytest
import torch

from transferkit.config import TrainSettings
from transferkit.engine.trainer import Trainer
from transferkit.finetune import DELTA, Batch, Compose, Discriminative, L2SP, PartialFineTune, create_strategy
from transferkit.finetune.functional import (bss_penalty, feature_map_distance, l2sp_penalty, layerwise_lrs,
                                             similarity_preserving_loss)
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


def test_feature_map_distance_matches_hand_computation():
    m = torch.zeros(2, 3, 2, 2)
    s = m.clone()
    s[:, 1] = 2.0  # channel 1 differs by 2 at every position: 4 per position, mean over positions 4
    assert float(feature_map_distance([m], [s])) == pytest.approx(4.0)
    assert float(feature_map_distance([m], [s], [torch.tensor([1.0, 0.5, 1.0])])) == pytest.approx(2.0)
    assert float(feature_map_distance([m], [m])) == 0.0


def test_delta_is_zero_at_the_source_and_grows_after_a_nudge():
    model = tiny_model()
    s = DELTA(weight=1.0)
    s.prepare_model(model)
    x = tiny_data().x[:4]
    model.eval()
    batch = s.prepare_batch(Batch(x, torch.zeros(4, dtype=torch.long)))
    assert float(s.loss_terms(batch, model(x), model)["penalty"].detach()) == 0.0
    with torch.no_grad():
        model.backbone.blocks[0][0].weight.add_(0.1)
    batch = s.prepare_batch(batch)
    assert float(s.loss_terms(batch, model(x), model)["penalty"].detach()) > 0.0
    s.after_task(model, "default")
    s.prepare_batch(batch)
    model(x)
    assert s._maps["model"] == []  # hooks are gone after training


def test_delta_keeps_features_closer_to_the_source_than_plain_fine_tuning():
    x = tiny_data().x
    drift = {}
    for name, strategy in (("full", create_strategy("full")), ("delta", DELTA(weight=10.0))):
        model = tiny_model()
        source = copy.deepcopy(model.backbone).eval()
        Trainer(settings(epochs=4, lr=0.05), progress=False).fit(model, strategy, tiny_data())
        model.eval()
        with torch.no_grad():
            drift[name] = float((model.backbone.features(x) - source.features(x)).pow(2).mean())
    assert drift["delta"] < drift["full"]


def test_similarity_preserving_loss_ignores_width_and_scale():
    f = torch.randn(6, 5)
    assert float(similarity_preserving_loss(3.0 * f, f)) == pytest.approx(0.0, abs=1e-6)
    q, _ = torch.linalg.qr(torch.randn(5, 5))
    wider = torch.cat([f @ q, torch.zeros(6, 3)], 1)  # rotated and padded: the same Gram matrix
    assert float(similarity_preserving_loss(f, wider)) == pytest.approx(0.0, abs=1e-6)
    assert float(similarity_preserving_loss(f, torch.randn(6, 9))) > 0.01


def _stage_maps(backbone, x, n_stages=None):
    """The outputs of a backbone's (last ``n_stages``) stages on ``x``, by hooks of the test's own."""
    stages = backbone.stages()
    chosen = stages[-n_stages:] if n_stages else stages
    maps = []
    handles = [st.register_forward_hook(lambda m, i, o: maps.append(o.detach())) for st in chosen]
    with torch.no_grad():
        backbone.features(x)
    for h in handles:
        h.remove()
    return maps


@pytest.mark.parametrize("other", ["joint", "kd"])
@pytest.mark.parametrize("delta_first", [True, False])
def test_delta_composed_pairs_only_the_target_batch_with_the_source_copy(other, delta_first):
    """delta+joint and delta+kd (with a transfer set) run extra forwards in each step, of another
    batch size (3 or 5 rows against the target's 4): DELTA's penalty must stay the distance between the
    target batch's feature maps and the source copy's on the same batch, in every step."""
    from transferkit.finetune import KD, Joint
    from transferkit.finetune.base import Batch as B

    model = tiny_model()
    extra = Joint(source=tiny_data(12), batch_size=3) if other == "joint" else \
        KD(tiny_model(seed=7), transfer_set=tiny_data(40), batch_size=5)
    delta = DELTA(weight=1.0, stages=2)
    s = Compose([delta, extra] if delta_first else [extra, delta])
    s.prepare_model(model)
    source = copy.deepcopy(model.backbone).eval()
    with torch.no_grad():  # the model moves away from its source copy, so the penalty is not 0
        model.backbone.proj[2].weight.add_(0.05)
        model.backbone.blocks[2][0].weight.mul_(1.1)
    model.eval()  # BatchNorm statistics as at inference, as the source copy's
    data = tiny_data()
    for step in range(3):
        x = data.x[4 * step:4 * step + 4]
        batch = s.prepare_batch(B(x, torch.as_tensor(data.targets[4 * step:4 * step + 4])))
        terms = s.named_loss_terms(batch, model(batch.x), model)
        expected = feature_map_distance(_stage_maps(model.backbone, x, 2), _stage_maps(source, x, 2))
        assert float(expected) > 1e-4
        assert float(terms["delta/penalty"].detach()) == pytest.approx(float(expected), rel=1e-5)


def test_delta_joint_trains_through_the_trainer():
    from transferkit.finetune import create_strategy as make

    s = make("delta+joint", joint={"source": tiny_data(12), "batch_size": 5})
    history = Trainer(settings(epochs=1), progress=False).fit(tiny_model(), s, tiny_data())  # 3 steps
    assert np.isfinite(history[-1]["train/delta/penalty"]) and "train/joint/source" in history[-1]
