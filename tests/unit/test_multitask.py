"""Multi-task weighting and gradient aggregation: invariants and hand-checked values."""

import math

import numpy as np
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
    for w in model.gate_weights(model.backbone.features(torch.randn(5, 6))).values():
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
    from transferkit.multitask.models import HardSharing
    from transferkit.multitask.step import MultiTaskStep

    torch.manual_seed(0)
    model = HardSharing(create_backbone("mlp", in_features=6, hidden=(16, 16)), {"sign": 2, "value": 1},
                        tasks={"value": "regression"})
    args = {"weights": {"sign": 1.0, "value": 0.5}} if name == "fixed" else (
        {"tasks": ["sign", "value"]} if name in ("uncertainty", "dwa", "gradnorm") else {})
    model.weighter = WEIGHTERS.build(name, **args)
    data, val = _two_task_data(), _two_task_data(64)
    history = Trainer(TrainSettings(epochs=10, batch_size=32, lr=0.1, optimizer="sgd", momentum=0.0),
                      progress=False).fit(model, MultiTaskStep(), data, val)  # every parameter trains, the weighter's too
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


# -- MGDA-UB's shared representation (Sener & Koltun, 2018: L_t = f_t(Z; theta_t), Z = g(x; theta_sh)) --

def _mgda_ub_weights(losses, features):
    total, weights = WEIGHTERS.build("mgda")(dict(zip("abc", losses)), features=features)
    return torch.tensor(list(weights.values()), dtype=torch.float64)


def test_mgda_ub_on_mmoe_differentiates_through_the_gates_and_heads_alone():
    """MMoE's tasks read the experts' outputs and the gates' input; dL_t/dZ must be the partial
    derivatives through task t's gate and head, not a gradient through the shared experts."""
    import torch.nn.functional as F

    from transferkit.backbones import create_backbone
    from transferkit.multitask.models import MMoE

    torch.manual_seed(0)
    model = MMoE(create_backbone("mlp", in_features=6, hidden=(8,)), {"a": 3, "b": 2, "c": 2}, experts=3, expert_width=4)
    x = torch.randn(5, 6)
    ys = [torch.tensor([0, 1, 2, 0, 1]), torch.tensor([0, 1, 1, 0, 1]), torch.tensor([1, 1, 0, 0, 1])]
    out = model(x)
    w = _mgda_ub_weights([F.cross_entropy(out.logits[t], y) for t, y in zip("abc", ys)], out.features)
    z = model.backbone.features(x).detach().requires_grad_()  # by hand: Z = (e, z) as leaves, each task's part on top
    e = torch.stack([ex(z) for ex in model.experts], 1).detach().requires_grad_()
    gates = model.gate_weights(z)
    by_hand = [F.cross_entropy(model.heads[t]((gates[t].unsqueeze(-1) * e).sum(1)), y) for t, y in zip("abc", ys)]
    D = torch.stack([torch.cat([g.flatten() for g in torch.autograd.grad(L, [e, z], retain_graph=True)])
                     for L in by_hand]).double()
    torch.testing.assert_close(w, min_norm_weights(D @ D.t()).double(), rtol=1e-5, atol=1e-6)


def test_mgda_ub_on_cross_stitch_takes_the_activations_before_the_last_stitch():
    """Every task reads all columns' last activations through its row of the last stitch unit, so
    the Gram matrix of dL_t/dZ is not diagonal (the stitched outputs, one slot per task, gave a
    diagonal one and weights 1/|g_t|^2)."""
    import torch.nn.functional as F

    from transferkit.multitask.models import CrossStitch

    torch.manual_seed(0)
    blocks = [torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU()),
              torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU())]
    model = CrossStitch(blocks, 8, {"a": 3, "b": 2, "c": 2}, keep=0.6)
    x = torch.randn(5, 6)
    ys = [torch.tensor([0, 1, 2, 0, 1]), torch.tensor([0, 1, 1, 0, 1]), torch.tensor([1, 1, 0, 0, 1])]
    out = model(x)
    losses = [F.cross_entropy(out.logits[t], y) for t, y in zip("abc", ys)]
    w = _mgda_ub_weights(losses, out.features)
    h = out.features.detach().requires_grad_()  # [B, T, W]: by hand, x_t = sum_s a[t, s] h_s, then head t
    a = model.stitches[-1].detach()
    by_hand = [F.cross_entropy(model.heads[t]((a[i][None, :, None] * h).sum(1)), y)
               for i, (t, y) in enumerate(zip("abc", ys))]
    D = torch.stack([torch.autograd.grad(L, h, retain_graph=True)[0].flatten() for L in by_hand]).double()
    K = D @ D.t()
    assert float((K - torch.diag(K.diagonal())).abs().max()) > 1e-3 * float(K.diagonal().max())
    torch.testing.assert_close(w, min_norm_weights(K).double(), rtol=1e-5, atol=1e-6)


# -- uncertainty weighting: Kendall et al. (2018), eq. 7 (regression) and eq. 10 (classification) --

def test_uncertainty_uses_the_classification_and_regression_forms_by_task_type():
    from transferkit.multitask.weighters import create_weighter

    w = create_weighter("uncertainty", ["cls", "reg"], {"cls": "classification", "reg": "regression"})
    with torch.no_grad():
        w.log_vars.copy_(torch.tensor([0.3, -0.2]))
    total, weights = w({"cls": torch.tensor(1.5), "reg": torch.tensor(0.7)})
    # exp(-s) L + s/2 (1/sigma^2 L + log sigma) and exp(-s) L / 2 + s/2 (L / (2 sigma^2) + log sigma)
    expected = math.exp(-0.3) * 1.5 + 0.15 + 0.5 * math.exp(0.2) * 0.7 - 0.1
    assert float(total.detach()) == pytest.approx(expected, rel=1e-6)
    assert weights == pytest.approx({"cls": math.exp(-0.3), "reg": 0.5 * math.exp(0.2)}, rel=1e-6)


def test_uncertainty_log_variances_settle_where_each_likelihood_peaks():
    """With the losses held fixed, s minimises c exp(-s) L + s/2: s* = log(2 c L), i.e. sigma^2 = 2L for
    classification and sigma^2 = L (the Gaussian's variance = the mean squared error) for regression."""
    from transferkit.multitask.weighters import create_weighter

    w = create_weighter("uncertainty", ["cls", "reg"], {"cls": "classification", "reg": "regression"})
    opt = torch.optim.SGD(w.parameters(), lr=0.5)
    for _ in range(400):
        total, _ = w({"cls": torch.tensor(0.8), "reg": torch.tensor(3.0)})
        opt.zero_grad()
        total.backward()
        opt.step()
    torch.testing.assert_close(w.log_vars.detach(), torch.tensor([math.log(1.6), math.log(3.0)]), atol=1e-4, rtol=0)


def test_multitask_runs_give_the_weighter_each_tasks_declared_type(tmp_path, monkeypatch):
    from transferkit.config import MultitaskConfig, parse_config
    from transferkit.multitask.weighters import create_weighter
    from transferkit.runs import multitask as run

    data = _two_task_data(8)
    cfg = parse_config({"model": {"backbone_args": {"in_features": 6, "hidden": [4]},
                                  "tasks": {"value": {"task": "regression"}}},
                        "train": {"epochs": 1, "batch_size": 8, "device": "cpu"}}, schema=MultitaskConfig)
    given = {}

    def spy(name, tasks, task_types=None, **args):
        given["types"] = task_types
        return create_weighter(name, tasks, task_types, **args)

    monkeypatch.setattr(run, "create_weighter", spy)
    run.train_one(cfg, (data, data, data), "uncertainty", {}, 0, tmp_path / "run", progress=False)
    assert given["types"] == {"sign": "classification", "value": "regression"}  # model.tasks, as declared
    w = create_weighter("uncertainty", list(data.targets), given["types"])
    _, weights = w({"sign": torch.tensor(1.0), "value": torch.tensor(1.0)})
    assert weights == {"sign": 1.0, "value": 0.5}
    with pytest.raises(TransferkitError, match="'task_types' names the unknown task 'other'"):
        create_weighter("uncertainty", ["sign"], {"other": "regression"})


# -- weighter state survives save/load --

def test_dwa_and_gradnorm_state_round_trips_through_a_state_dict():
    dwa = WEIGHTERS.build("dwa", tasks=["a", "b"], temperature=1.0)
    for la, lb in ([1.0, 1.0], [0.5, 1.0], [0.2, 0.9]):
        dwa({"a": torch.tensor(la), "b": torch.tensor(lb)})
        dwa.end_epoch()
    fresh = WEIGHTERS.build("dwa", tasks=["a", "b"], temperature=1.0)
    fresh.load_state_dict(dwa.state_dict())
    r = torch.tensor([0.2 / 0.5, 0.9 / 1.0])  # the last two epochs' loss ratios
    torch.testing.assert_close(fresh.current(), 2 * torch.softmax(r, 0))
    torch.testing.assert_close(fresh.current(), dwa.current())

    layer = torch.nn.Linear(3, 2)
    gn = WEIGHTERS.build("gradnorm", tasks=["a", "b"])
    x = torch.randn(4, 3)
    L = lambda: {"a": layer(x)[:, 0].pow(2).mean(), "b": layer(x)[:, 1].abs().mean()}  # noqa: E731
    initial = {k: v.item() for k, v in L().items()}
    gn(L(), last_shared=list(layer.parameters()))
    fresh = WEIGHTERS.build("gradnorm", tasks=["a", "b"])
    fresh.load_state_dict(gn.state_dict())
    torch.testing.assert_close(fresh.initial, torch.tensor([initial["a"], initial["b"]]))
    assert bool(fresh.started)


# -- delta-m and the single-task baselines --

def test_delta_m_refuses_a_zero_baseline_and_the_summary_says_why():
    from transferkit.metrics.multitask import ZeroBaselineError, delta_m
    from transferkit.runs.multitask import summarise

    with pytest.raises(ZeroBaselineError, match="baseline of task 'err' is 0"):
        delta_m({"acc": 0.9, "err": 0.1}, {"acc": 0.8, "err": 0.0}, {"acc": True, "err": False})
    results = [{"kind": "multi", "name": "equal", "seed": 0, "test": {"a/accuracy": 0.5, "b/accuracy": 0.4}, "seconds": 1},
               {"kind": "single", "name": "a", "seed": 0, "test": {"a/accuracy": 0.0}, "seconds": 1},
               {"kind": "single", "name": "b", "seed": 0, "test": {"b/accuracy": 0.5}, "seconds": 1}]
    summary = summarise(results, ["a", "b"])
    assert "delta_m" not in summary["equal"] and "task 'a' is 0" in summary["equal"]["delta_m_undefined"]


@pytest.mark.parametrize("arch,single", [("mmoe", "mmoe"), ("hard", "hard"), ("cross_stitch", "hard")])
def test_single_task_baselines_use_the_multitask_models_architecture(monkeypatch, tmp_path, arch, single):
    from transferkit.runs import multitask as run

    data = _two_task_data(40)
    cls = {"sign": torch.tensor([0, 1]).repeat(20)}
    data = type(data)(data.x, cls | {"other": 1 - cls["sign"]})
    calls = []

    def fake_train(cfg, d, weighter, args, seed, run_dir, arch=None, progress=None):
        calls.append((sorted(d[0].targets), arch))
        return {"test": {f"{t}/accuracy": 0.5 for t in d[0].targets}, "history": [], "seconds": 0.0}

    monkeypatch.setattr(run, "load_tasks", lambda cfg, progress=None: (data, data, data))
    monkeypatch.setattr(run, "train_one", fake_train)
    monkeypatch.setattr("transferkit.report.multitask.multitask_report", lambda *a, **k: None)
    cfg = {"data": {"kind": "domains"}, "model": {"arch": arch, "backbone": "mlp",
                                                  "backbone_args": {"in_features": 6, "hidden": [8]}},
           "weighter": {"name": "equal"}, "single_task": True, "seeds": 1}
    run.run_multitask(cfg, tmp_path / "run", progress=False)
    assert calls == [(["other", "sign"], None), (["sign"], single), (["other"], single)]


# -- the aggregators against independent computations --

@pytest.mark.parametrize("max_iters,epsilon,tol", [(250, 1e-5, 3e-3), (2000, 1e-12, 5e-4)])
def test_min_norm_weights_satisfy_the_kkt_conditions_on_random_gram_matrices(max_iters, epsilon, tol):
    """The min-norm point w of the simplex for K (min w^T K w, w >= 0, sum w = 1) has multipliers
    mu_i = (K w)_i - w^T K w: dual feasibility mu_i >= 0 for every i, complementary slackness
    w_i mu_i = 0 (equality where w_i > 0). Frank-Wolfe meets them to a tolerance that shrinks with
    its iterations (at the defaults, a few 1e-3 of the largest entry of K)."""
    g = torch.Generator().manual_seed(5)
    boundary = []
    for trial in range(20):
        T = 3 + trial % 4
        G = torch.randn(T, 10, generator=g, dtype=torch.float64)
        G[1] = -0.5 * G[0] + 0.3 * G[1]  # a conflict, so that some weights vanish
        K = (G @ G.t()).numpy()
        w = min_norm_weights(K, max_iters=max_iters, epsilon=epsilon).numpy()
        mu, scale = K @ w - w @ K @ w, np.abs(K).max()
        assert w.min() >= 0 and w.sum() == pytest.approx(1.0)
        assert mu.min() >= -tol * scale  # (K w)_i >= w^T K w
        assert np.abs(w * mu).max() <= tol * scale  # = where w_i > 0
        assert np.abs(mu[w > 0.05]).max() <= 10 * tol * scale
        boundary.append(bool((w < 0.01).any()))
    assert any(boundary) and not all(boundary)  # solutions inside the simplex and on its faces were checked


def test_pcgrad_for_three_or_more_tasks_equals_sequential_projection_in_a_fixed_order():
    """Yu et al. (2020), Algorithm 1: g_i is projected, one other task at a time in the given order,
    onto the normal plane of each original g_j it conflicts with (g_i' . g_j < 0)."""
    from transferkit.multitask.functional import pcgrad_weights

    g = torch.Generator().manual_seed(7)
    conflicts = 0
    for T in (3, 4, 5):
        G = torch.randn(T, 6, generator=g, dtype=torch.float64)
        orders = [torch.randperm(T, generator=g).tolist() for _ in range(T)]
        by_hand = []
        for i in range(T):
            gi = G[i].clone()
            for j in orders[i]:
                if j != i and float(gi @ G[j]) < 0:
                    gi = gi - (gi @ G[j]) / (G[j] @ G[j]) * G[j]
                    conflicts += 1
            by_hand.append(gi)
        C = pcgrad_weights((G @ G.t()).numpy(), orders)
        torch.testing.assert_close(torch.as_tensor(C) @ G, torch.stack(by_hand))
        d, P = pcgrad(G, generator=torch.Generator().manual_seed(11))  # its random orders, drawn again here
        gen = torch.Generator().manual_seed(11)
        orders = [torch.randperm(T, generator=gen).tolist() for _ in range(T)]
        torch.testing.assert_close(P, torch.as_tensor(pcgrad_weights((G @ G.t()).numpy(), orders)) @ G)
        torch.testing.assert_close(d, P.sum(0))
    assert conflicts >= 3  # projections happened


def test_cagrad_solves_the_papers_primal_problem():
    """Liu et al. (2021), eq. 2: d* = argmax_d min_i g_i . d subject to |d - g0| <= c |g0|. Solved here
    directly over d (SLSQP on the primal, not the dual the implementation uses); the reference code's
    update is d*, divided by 1 + c^2 when rescaled."""
    from scipy.optimize import minimize

    G = torch.tensor([[1.0, 0.2, 0.0], [-0.6, 0.8, 0.1], [0.1, -0.4, 0.9]], dtype=torch.float64)
    c = 0.5
    g0 = G.mean(0).numpy()
    Gn = G.numpy()
    radius = c * np.linalg.norm(g0)
    res = minimize(lambda v: -v[-1], np.r_[g0, (Gn @ g0).min()], method="SLSQP",
                   constraints=[{"type": "ineq", "fun": lambda v: Gn @ v[:-1] - v[-1]},
                                {"type": "ineq", "fun": lambda v: radius**2 - np.sum((v[:-1] - g0) ** 2)}],
                   options={"ftol": 1e-14, "maxiter": 1000})
    d_star = torch.as_tensor(res.x[:-1])
    assert float((G @ d_star).min()) > float((G @ G.mean(0)).min()) + 1e-3  # the worst task gains
    d, _ = cagrad(G, c=c, rescale=False)
    torch.testing.assert_close(d, d_star, atol=1e-5, rtol=0)
    d_rescaled, _ = cagrad(G, c=c, rescale=True)
    torch.testing.assert_close(d_rescaled, d_star / (1 + c**2), atol=1e-5, rtol=0)
