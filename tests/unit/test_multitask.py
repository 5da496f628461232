"""Multi-task weighting and gradient aggregation: invariants and hand-checked values."""

import pytest
import torch

from transferkit.errors import TransferkitError
from transferkit.multitask import WEIGHTERS, cagrad, imtl_g, mgda, min_norm_weights, pcgrad


def test_pcgrad_removes_every_conflict_between_two_tasks():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        G = torch.randn(2, 10, generator=g)
        d, P = pcgrad(G, generator=g)
        assert float(P[0] @ G[1]) >= -1e-5 and float(P[1] @ G[0]) >= -1e-5
        torch.testing.assert_close(d, P.sum(0))


def test_pcgrad_projected_gradients_have_no_negative_pairwise_dot_products():
    # two tasks: P0.P1 = -a (1 - a^2 / (|g0|^2 |g1|^2)) >= 0 for a = g0.g1 < 0 (Cauchy-Schwarz)
    g = torch.Generator().manual_seed(4)
    conflicts = 0
    for _ in range(200):
        G = torch.randn(2, 6, generator=g, dtype=torch.float64)
        conflicts += int(G[0] @ G[1] < 0)
        _, P = pcgrad(G, generator=g)
        assert float(P[0] @ P[1]) >= -1e-10
    assert conflicts > 50  # the draws did exercise the projection


def test_pcgrad_leaves_agreeing_gradients_alone():
    G = torch.tensor([[1.0, 0.2], [0.5, 1.0]])
    d, P = pcgrad(G)
    torch.testing.assert_close(P, G)


def test_mgda_weights_lie_on_the_simplex_and_give_the_min_norm_point():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    d, w = mgda(torch.stack([g1, g2]))
    assert torch.all(w >= 0) and float(w.sum()) == pytest.approx(1.0)
    # by hand: minimise |a g1 + (1-a) g2|^2 = a^2 + 4 (1-a)^2 -> a = 4/5
    torch.testing.assert_close(w, torch.tensor([0.8, 0.2]))
    torch.testing.assert_close(d, torch.tensor([0.8, 0.4]))
    d, w = mgda(torch.stack([g1, torch.tensor([2.0, 0.0])]))  # the shorter vector is the min-norm point
    torch.testing.assert_close(d, g1)


def test_min_norm_weights_for_many_tasks_beat_every_vertex_and_the_mean():
    G = torch.randn(5, 20, generator=torch.Generator().manual_seed(2))
    K = G @ G.t()
    w = min_norm_weights(K)
    assert torch.all(w >= -1e-9) and float(w.sum()) == pytest.approx(1.0, abs=1e-6)
    best = float(w @ K @ w)
    assert best <= float(K.diag().min()) + 1e-6 and best <= float(K.mean()) + 1e-6


def test_imtl_g_projects_equally_on_every_task_direction():
    G = torch.randn(4, 12, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    d, w = imtl_g(G)
    proj = (G / G.norm(dim=1, keepdim=True)) @ d
    torch.testing.assert_close(proj, proj[0].expand(4))
    assert float(w.sum()) == pytest.approx(1.0)


def test_cagrad_improves_the_worst_task_and_reduces_to_the_mean_for_c0():
    G = torch.tensor([[1.0, 0.0], [-0.9, 0.3]], dtype=torch.float64)
    d, w = cagrad(G, c=0.5)
    assert float((G @ d).min()) > float((G @ G.mean(0)).min())
    d0, _ = cagrad(G, c=0.0)
    torch.testing.assert_close(d0, G.mean(0))


def test_equal_weighting_equals_the_plain_sum():
    losses = {"a": torch.tensor(0.7), "b": torch.tensor(2.5), "c": torch.tensor(0.1)}
    total, weights = WEIGHTERS.build("equal")(losses)
    assert float(total) == pytest.approx(3.3) and set(weights.values()) == {1.0}


def test_uncertainty_log_variances_move_towards_higher_task_loss():
    w = WEIGHTERS.build("uncertainty", tasks=["hard", "easy"])
    opt = torch.optim.SGD(w.parameters(), lr=0.1)
    for _ in range(5):
        total, _ = w({"hard": torch.tensor(3.0), "easy": torch.tensor(0.2)})
        opt.zero_grad()
        total.backward()
        opt.step()
    s_hard, s_easy = w.log_vars.tolist()
    assert s_hard > 0 > s_easy  # the harder task's variance grows: its weight exp(-s) shrinks


def test_dwa_weights_follow_the_loss_ratio_and_random_weights_sum_to_the_task_count():
    dwa = WEIGHTERS.build("dwa", tasks=["a", "b"], temperature=1.0)
    for epoch_losses in ([1.0, 1.0], [0.5, 1.0]):  # a halves, b stays
        dwa({"a": torch.tensor(epoch_losses[0]), "b": torch.tensor(epoch_losses[1])})
        dwa.end_epoch()
    _, weights = dwa({"a": torch.tensor(1.0), "b": torch.tensor(1.0)})
    assert weights["b"] > weights["a"] and sum(weights.values()) == pytest.approx(2.0)
    _, rw = WEIGHTERS.build("rlw")({"a": torch.tensor(1.0), "b": torch.tensor(1.0), "c": torch.tensor(1.0)})
    assert sum(rw.values()) == pytest.approx(3.0, rel=1e-5)


def test_fixed_weights_and_bad_input():
    total, _ = WEIGHTERS.build("fixed", weights={"a": 2.0, "b": 0.5})({"a": torch.tensor(1.0), "b": torch.tensor(2.0)})
    assert float(total) == 3.0
    with pytest.raises(TransferkitError, match="no weight for task"):
        WEIGHTERS.build("fixed", weights={"a": 1.0})({"a": torch.tensor(1.0), "b": torch.tensor(1.0)})
    with pytest.raises(TransferkitError, match="weights.b"):
        WEIGHTERS.build("fixed", weights={"a": 1.0, "b": -1})
    with pytest.raises(TransferkitError, match="Did you mean 'equal'"):
        WEIGHTERS.build("equall")


def _mtl_setup(arch="hard"):
    from transferkit.backbones import create_backbone
    from transferkit.multitask.models import MMoE, HardSharing

    torch.manual_seed(0)
    bb = create_backbone("mlp", in_features=6, hidden=(8, 8))
    outputs = {"a": 3, "b": 2, "c": 1}
    model = HardSharing(bb, outputs) if arch == "hard" else MMoE(bb, outputs, experts=3, expert_width=4)
    x = torch.randn(5, 6)
    out = model(x)
    losses = [torch.nn.functional.cross_entropy(out.logits["a"], torch.tensor([0, 1, 2, 0, 1])),
              torch.nn.functional.cross_entropy(out.logits["b"], torch.tensor([0, 1, 1, 0, 1])),
              torch.nn.functional.mse_loss(out.logits["c"].squeeze(1), torch.randn(5))]
    return model, out, losses


@pytest.mark.parametrize("arch", ["hard", "mmoe"])
def test_batched_shared_gradients_equal_one_backward_per_task(arch):
    from transferkit.multitask.gradients import shared_gradients

    model, out, losses = _mtl_setup(arch)
    shared = list(model.shared_parameters())
    G = shared_gradients(losses, shared)
    for t, L in enumerate(losses):
        ref = torch.autograd.grad(L, shared, retain_graph=True, allow_unused=True)
        flat = torch.cat([(r if r is not None else torch.zeros_like(p)).flatten() for r, p in zip(ref, shared)])
        torch.testing.assert_close(G[t], flat)


def test_aggregated_backward_with_the_plain_sum_equals_a_backward_of_the_sum():
    from transferkit.multitask.gradients import aggregated_backward

    model, out, losses = _mtl_setup()
    aggregated_backward(losses, list(model.shared_parameters()), list(model.heads.parameters()),
                        lambda K: [1.0] * len(K))
    same, _, again = _mtl_setup()  # same seed: same weights and data
    sum(again).backward()
    for a, b in zip(model.parameters(), same.parameters()):
        torch.testing.assert_close(a.grad, b.grad)


def test_representation_gradients_are_each_tasks_own():
    from transferkit.multitask.gradients import representation_gradients

    model, out, losses = _mtl_setup()
    dz = representation_gradients(losses, out.features)
    assert dz.shape == (3, *out.features.shape)
    torch.testing.assert_close(dz[1], torch.autograd.grad(losses[1], out.features, retain_graph=True)[0])


def test_mmoe_gates_are_distributions_over_the_experts():
    model, out, _ = _mtl_setup("mmoe")
    for w in model.gate_weights(out.features).values():
        assert w.shape == (5, 3) and torch.allclose(w.sum(1), torch.ones(5)) and bool((w >= 0).all())


def test_gradnorm_raises_the_weight_of_the_task_that_trains_slower():
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 4)
    gn = WEIGHTERS.build("gradnorm", tasks=["slow", "fast"], alpha=1.5)
    opt = torch.optim.SGD(gn.parameters(), lr=0.05)
    x = torch.randn(8, 4)
    for step in range(20):
        m = (layer(x) ** 2).mean()
        unit = m / m.detach()  # value 1, the same gradient direction for both tasks
        losses = {"slow": unit, "fast": unit * 0.9 ** step}  # "fast" falls by 10 % a step, "slow" stays
        total, weights = gn(losses, list(layer.parameters()))
        opt.step()
    assert weights["slow"] > weights["fast"] and sum(weights.values()) == pytest.approx(2.0, rel=1e-4)


def test_cross_stitch_starts_near_separate_networks_and_mixes_through_its_units():
    from transferkit.multitask.models import CrossStitch

    torch.manual_seed(0)
    blocks = [torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU()), torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU())]
    model = CrossStitch(blocks, 8, {"a": 3, "b": 2}, keep=1.0)  # keep=1: no mixing, two separate networks
    x = torch.randn(4, 6)
    out = model(x)
    alone = model.heads["a"](model.columns[0][1](model.columns[0][0](x)))
    torch.testing.assert_close(out.logits["a"], alone)
    out.logits["b"].sum().backward()
    assert model.stitches[0].grad.abs().sum() > 0  # task b's loss reaches the stitch units
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.heads["a"].parameters())


def _two_task_data(n=256):
    from transferkit.multitask.data import MultiTaskArrays

    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=g)
    return MultiTaskArrays(x, {"sign": (x[:, 0] > 0).long(), "value": 2.0 * x[:, 1]})


@pytest.mark.parametrize("name", WEIGHTERS.names())
def test_every_weighter_trains_a_shared_model_through_the_trainer(name):
    from transferkit.backbones import create_backbone
    from transferkit.config import TrainSettings
    from transferkit.engine.trainer import Trainer
    from transferkit.finetune.base import Strategy
    from transferkit.multitask.models import HardSharing

    torch.manual_seed(0)
    model = HardSharing(create_backbone("mlp", in_features=6, hidden=(16, 16)), {"sign": 2, "value": 1},
                        tasks={"value": "regression"})
    args = {"weights": {"sign": 1.0, "value": 0.5}} if name == "fixed" else (
        {"tasks": ["sign", "value"]} if name in ("uncertainty", "dwa", "gradnorm") else {})
    model.weighter = WEIGHTERS.build(name, **args)
    data, val = _two_task_data(), _two_task_data(64)
    history = Trainer(TrainSettings(epochs=10, batch_size=32, lr=0.1, optimizer="sgd", momentum=0.0),
                      progress=False).fit(model, Strategy(), data, val)  # every parameter trains, the weighter's too
    first, last = history[0], history[-1]
    assert last["train/task/sign"] < first["train/task/sign"] and last["train/task/value"] < first["train/task/value"]
    assert {"train/weight/sign", "train/weight/value", "val/sign/accuracy", "val/value/mse", "val/accuracy"} <= set(last)
    with torch.no_grad():
        out = model(data.x)
    assert float((out.logits["sign"].argmax(1) == data.targets["sign"]).float().mean()) > 0.8


def test_delta_m_by_hand_and_gradient_cosines():
    from transferkit.metrics.multitask import delta_m, gradient_cosines, gram_cosines

    # accuracy 0.9 vs 0.8 (+12.5 %), error 0.5 vs 0.4 (lower is better: -25 %) -> mean -6.25 %
    assert delta_m({"acc": 0.9, "err": 0.5}, {"acc": 0.8, "err": 0.4}, {"acc": True, "err": False}) == pytest.approx(-6.25)
    with pytest.raises(ValueError, match="missing"):
        delta_m({"acc": 0.9}, {}, {"acc": True})
    G = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    C = gradient_cosines(G)
    torch.testing.assert_close(C, torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 1.0]]))
    torch.testing.assert_close(gram_cosines(G @ G.t()), C)


@pytest.mark.parametrize("name,args", [("imtl_g", {}), ("cagrad", {"c": 0.4}), ("mgda", {"upper_bound": False})])
def test_the_training_step_sets_the_shared_gradient_to_the_aggregated_direction(name, args):
    """aggregated_backward (Gram matrix per parameter, update per parameter) against aggregate(G)
    on the concatenated per-task gradients; the heads get the plain sum's gradient."""
    from transferkit.multitask.gradients import aggregated_backward, shared_gradients

    weighter = WEIGHTERS.build(name, **args)
    model, out, losses = _mtl_setup()
    shared, heads = list(model.shared_parameters()), list(model.heads.parameters())
    d, w = weighter.aggregate(shared_gradients(losses, shared))
    w2, K = aggregated_backward(losses, shared, heads, weighter.weights)
    torch.testing.assert_close(torch.as_tensor(w2, dtype=w.dtype), w)
    torch.testing.assert_close(torch.cat([p.grad.flatten() for p in shared]), d)
    ref, _, again = _mtl_setup()
    sum(again).backward()
    for a, b in zip(heads, ref.heads.parameters()):
        torch.testing.assert_close(a.grad, b.grad)
