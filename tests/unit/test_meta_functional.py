"""The meta-learning maths against hand-written versions on tiny seeded models (float64)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transferkit.errors import TransferkitError
from transferkit.meta.functional import (
    adapt,
    adapt_batch,
    maml_loss,
    proto_logits,
    proto_loss,
    prototypes,
    reptile_epsilon,
    reptile_update,
    task_loss,
)

TOL = dict(atol=1e-6, rtol=1e-6)


@pytest.fixture(scope="module", autouse=True)
def _import_dynamo():
    """torch.func.grad imports torch._dynamo on first use (~2 s, once per process); pay it in setup."""
    import torch._dynamo  # noqa: F401


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def _tasks(tasks: int = 3, seed: int = 1):
    """T tasks of 3-way data: support [T, 6, 4], query [T, 9, 4]."""
    g = torch.Generator().manual_seed(seed)
    sx = torch.randn(tasks, 6, 4, generator=g, dtype=torch.float64)
    qx = torch.randn(tasks, 9, 4, generator=g, dtype=torch.float64)
    sy = torch.arange(3).repeat(2).expand(tasks, 6)
    qy = torch.arange(3).repeat(3).expand(tasks, 9)
    return sx, sy, qx, qy


def _forward(p: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The same network written out by hand, with no torch.func."""
    return F.linear(torch.tanh(F.linear(x, p[0], p[1])), p[2], p[3])


def _unrolled_meta_grad(net, sx, sy, qx, qy, steps, lr, first_order):
    """The MAML meta-gradient by differentiating through an explicit inner loop, task by task."""
    theta = [p.detach().clone().requires_grad_(True) for p in net.parameters()]
    total = 0.0
    for t in range(len(sx)):
        fast = theta
        for _ in range(steps):
            loss = F.cross_entropy(_forward(fast, sx[t]), sy[t])
            g = torch.autograd.grad(loss, fast, create_graph=not first_order)
            if first_order:
                g = [gi.detach() for gi in g]
            fast = [p - lr * gi for p, gi in zip(fast, g)]
        total = total + F.cross_entropy(_forward(fast, qx[t]), qy[t])
    return torch.autograd.grad(total / len(sx), theta)


def _meta_grad(net, sx, sy, qx, qy, steps, lr, first_order):
    params = {n: p.detach().clone().requires_grad_(True) for n, p in net.named_parameters()}
    loss = maml_loss(net, params, sx, sy, qx, qy, steps, lr, first_order=first_order)
    return torch.autograd.grad(loss, list(params.values()))


def test_second_order_maml_equals_unrolled_inner_loop():
    net, data = _net(), _tasks()
    ours = _meta_grad(net, *data, steps=2, lr=0.4, first_order=False)
    ref = _unrolled_meta_grad(net, *data, steps=2, lr=0.4, first_order=False)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, **TOL)


def test_first_order_maml_drops_the_hessian_and_differs_from_second_order():
    net, data = _net(), _tasks()
    fo = _meta_grad(net, *data, steps=2, lr=0.4, first_order=True)
    for a, b in zip(fo, _unrolled_meta_grad(net, *data, steps=2, lr=0.4, first_order=True)):
        torch.testing.assert_close(a, b, **TOL)
    so = _meta_grad(net, *data, steps=2, lr=0.4, first_order=False)
    assert max((a - b).abs().max().item() for a, b in zip(fo, so)) > 1e-4


@pytest.mark.parametrize("first_order", [False, True])
def test_an_outer_torch_func_grad_gives_the_same_meta_gradient(first_order):
    """The meta-gradient may also be taken functionally; the first-order detach holds at that level too."""
    net, data = _net(), _tasks()
    params = {n: p.detach() for n, p in net.named_parameters()}
    got = torch.func.grad(lambda p: maml_loss(net, p, *data, steps=2, lr=0.4, first_order=first_order))(params)
    ref = _unrolled_meta_grad(net, *data, steps=2, lr=0.4, first_order=first_order)
    for name, b in zip(params, ref):
        torch.testing.assert_close(got[name], b, **TOL)


def test_first_order_with_one_step_is_the_query_gradient_at_the_adapted_weights():
    net, (sx, sy, qx, qy) = _net(), _tasks(tasks=1)
    params = dict(net.named_parameters())
    fast = {n: p.detach().requires_grad_(True) for n, p in adapt(net, params, sx[0], sy[0], 1, 0.4).items()}
    expected = torch.autograd.grad(task_loss(net, fast, qx[0], qy[0]), list(fast.values()))
    for a, b in zip(_meta_grad(net, sx, sy, qx, qy, steps=1, lr=0.4, first_order=True), expected):
        torch.testing.assert_close(a, b, **TOL)


def test_vmapped_meta_batch_equals_a_python_loop():
    net, (sx, sy, qx, qy) = _net(), _tasks(tasks=4)
    params = {n: p.detach().clone().requires_grad_(True) for n, p in net.named_parameters()}
    batched = maml_loss(net, params, sx, sy, qx, qy, steps=2, lr=0.3)
    looped = sum(task_loss(net, adapt(net, params, sx[t], sy[t], 2, 0.3), qx[t], qy[t]) for t in range(4)) / 4
    torch.testing.assert_close(batched, looped, **TOL)
    for a, b in zip(torch.autograd.grad(batched, list(params.values())),
                    torch.autograd.grad(looped, list(params.values()))):
        torch.testing.assert_close(a, b, **TOL)


def test_vectorize_false_gives_the_vmapped_values():
    net, (sx, sy, qx, qy) = _net(), _tasks(tasks=3)
    params = {n: p.detach().clone().requires_grad_(True) for n, p in net.named_parameters()}
    for first_order in (False, True):
        a, b = (maml_loss(net, params, sx, sy, qx, qy, 2, 0.3, first_order, vectorize=v) for v in (True, False))
        torch.testing.assert_close(a, b, **TOL)
        for ga, gb in zip(torch.autograd.grad(a, list(params.values())), torch.autograd.grad(b, list(params.values()))):
            torch.testing.assert_close(ga, gb, **TOL)
    wa, wb = (adapt_batch(net, params, sx, sy, 2, 0.3, vectorize=v) for v in (True, False))
    assert wa.keys() == wb.keys()
    for n in wa:
        assert wb[n].shape == (3, *params[n].shape)
        torch.testing.assert_close(wa[n], wb[n], **TOL)


def test_batch_norm_with_per_task_statistics_vmaps_like_a_loop():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6, track_running_stats=False), nn.Tanh(),
                        nn.Linear(6, 3)).double()
    sx, sy, qx, qy = _tasks(tasks=2)
    params = dict(net.named_parameters())
    batched = maml_loss(net, params, sx, sy, qx, qy, steps=1, lr=0.3)
    looped = sum(task_loss(net, adapt(net, params, sx[t], sy[t], 1, 0.3), qx[t], qy[t]) for t in range(2)) / 2
    torch.testing.assert_close(batched, looped, **TOL)


def test_second_order_gradients_through_batch_norm_match_an_unrolled_loop():
    """vmap's batch-norm backward rule is wrong for second derivatives (pytorch/functorch#534), so
    second-order MAML through batch norm must take the loop; its gradients match autograd's, task by task."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6, track_running_stats=False), nn.Tanh(),
                        nn.Linear(6, 3)).double()
    sx, sy, qx, qy = _tasks(tasks=2)
    params = {n: p.detach().clone().requires_grad_(True) for n, p in net.named_parameters()}
    batched = maml_loss(net, params, sx, sy, qx, qy, steps=2, lr=0.3)  # vectorize=True asked for
    looped = sum(task_loss(net, adapt(net, params, sx[t], sy[t], 2, 0.3), qx[t], qy[t]) for t in range(2)) / 2
    got = torch.autograd.grad(batched, list(params.values()))
    for a, b in zip(got, torch.autograd.grad(looped, list(params.values()))):
        torch.testing.assert_close(a, b, **TOL)
    bias = dict(zip(params, got))["0.bias"]  # a bias before batch norm cannot move the loss
    torch.testing.assert_close(bias, torch.zeros_like(bias), **TOL)


def test_batch_norm_tracking_running_statistics_in_training_mode_is_refused():
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 3)).double()
    sx, sy, qx, qy = _tasks(tasks=2)
    with pytest.raises(TransferkitError, match="layer '1' .* track_running_stats=False or call model.eval"):
        maml_loss(net, dict(net.named_parameters()), sx, sy, qx, qy, steps=1, lr=0.1)
    net.eval()  # stored statistics: allowed
    assert torch.isfinite(maml_loss(net, dict(net.named_parameters()), sx, sy, qx, qy, steps=1, lr=0.1))


def test_anil_adapts_only_the_head():
    net, (sx, sy, _, _) = _net(), _tasks(tasks=1)
    params = dict(net.named_parameters())
    head = ["2.weight", "2.bias"]
    fast = adapt(net, params, sx[0], sy[0], steps=3, lr=0.5, trainable=head)
    assert set(fast) == set(params)
    for name in ("0.weight", "0.bias"):
        assert fast[name] is params[name]
    for name in head:
        assert (fast[name] - params[name]).abs().max() > 1e-3


def test_adapt_refuses_an_unknown_trainable_name():
    net, (sx, sy, _, _) = _net(), _tasks(tasks=1)
    with pytest.raises(TransferkitError, match="'trainable' names 'head.weight'"):
        adapt(net, dict(net.named_parameters()), sx[0], sy[0], 1, 0.1, trainable=["head.weight"])


def test_anil_meta_gradient_still_reaches_the_body():
    net, data = _net(), _tasks()
    params = {n: p.detach().clone().requires_grad_(True) for n, p in net.named_parameters()}
    loss = maml_loss(net, params, *data, steps=1, lr=0.5, trainable=["2.weight", "2.bias"])
    body_grad = torch.autograd.grad(loss, params["0.weight"])[0]
    assert body_grad.abs().max() > 1e-4


def test_meta_sgd_rates_get_the_hand_computed_gradient():
    """One step with per-parameter rates a: d L_q(theta - a o g_s) / d a = -grad L_q(theta') o g_s."""
    net, (sx, sy, qx, qy) = _net(), _tasks(tasks=1)
    params = {n: p.detach() for n, p in net.named_parameters()}
    rates = {n: torch.full_like(p, 0.2, requires_grad=True) for n, p in params.items()}
    loss = maml_loss(net, params, sx, sy, qx, qy, steps=1, lr=rates)
    got = torch.autograd.grad(loss, list(rates.values()))
    theta = [p.clone().requires_grad_(True) for p in params.values()]
    g_s = torch.autograd.grad(F.cross_entropy(_forward(theta, sx[0]), sy[0]), theta)
    fast = [(p - 0.2 * g).detach().requires_grad_(True) for p, g in zip(theta, g_s)]
    g_q = torch.autograd.grad(F.cross_entropy(_forward(fast, qx[0]), qy[0]), fast)
    for a, gq, gs in zip(got, g_q, g_s):
        torch.testing.assert_close(a, -gq * gs, **TOL)


def test_meta_sgd_with_constant_rates_equals_a_scalar_rate():
    net, (sx, sy, _, _) = _net(), _tasks(tasks=1)
    params = dict(net.named_parameters())
    rates = {n: torch.tensor(0.3, dtype=torch.float64) for n in params}
    a = adapt(net, params, sx[0], sy[0], 2, rates)
    b = adapt(net, params, sx[0], sy[0], 2, 0.3)
    for n in params:
        torch.testing.assert_close(a[n], b[n], **TOL)


def test_reptile_with_one_sgd_step_is_sgd_on_the_joint_loss_scaled_by_epsilon_lr_over_tasks():
    """W_t = theta - alpha g_t, so theta + eps * mean_t(W_t - theta) = theta - (eps * alpha / T) grad sum_t L_t."""
    net, (sx, sy, _, _) = _net(), _tasks(tasks=3)
    params = {n: p.detach() for n, p in net.named_parameters()}
    alpha, eps, tasks = 0.1, 0.5, 3
    adapted = adapt_batch(net, params, sx, sy, steps=1, lr=alpha)
    assert adapted["0.weight"].shape == (tasks, 6, 4)
    new = reptile_update(params, adapted, eps)
    theta = {n: p.clone().requires_grad_(True) for n, p in params.items()}
    joint = sum(task_loss(net, theta, sx[t], sy[t]) for t in range(tasks))
    grads = dict(zip(theta, torch.autograd.grad(joint, list(theta.values()))))
    for n, p in params.items():
        torch.testing.assert_close(new[n], p - (eps * alpha / tasks) * grads[n], **TOL)


def test_reptile_update_moves_towards_the_mean_adapted_weights():
    params = {"w": torch.tensor([0.0, 1.0])}
    adapted = {"w": torch.tensor([[2.0, 1.0], [0.0, 3.0]])}  # mean (1, 2)
    torch.testing.assert_close(reptile_update(params, adapted, 0.5)["w"], torch.tensor([0.5, 1.5]))
    torch.testing.assert_close(reptile_update(params, adapted, 1.0)["w"], torch.tensor([1.0, 2.0]))


def test_prototypes_are_class_means():
    f = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 3.0], [5.0, 5.0]])
    y = torch.tensor([0, 0, 1, 1])
    torch.testing.assert_close(prototypes(f, y, 2), torch.tensor([[1.0, 0.0], [3.0, 4.0]]))


def test_proto_logits_are_negative_squared_distances():
    protos = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    q = torch.tensor([[1.0, 1.0], [3.0, 0.0]])
    # (1,1): to (1,0) 0+1=1, to (3,4) 4+9=13; (3,0): to (1,0) 4, to (3,4) 16
    torch.testing.assert_close(proto_logits(q, protos), torch.tensor([[-1.0, -13.0], [-4.0, -16.0]]))
    expected = F.cross_entropy(torch.tensor([[-1.0, -13.0], [-4.0, -16.0]]), torch.tensor([0, 1]))
    f, y = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 3.0], [5.0, 5.0]]), torch.tensor([0, 0, 1, 1])
    torch.testing.assert_close(proto_loss(f, y, q, torch.tensor([0, 1]), 2), expected)


def test_proto_logits_cosine_is_scaled_cosine_similarity():
    protos = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    q = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    # cos((1,0),(1,0)) = 1, cos((1,0),(3,4)) = 0.6; cos((0,1),(1,0)) = 0, cos((0,1),(3,4)) = 0.8
    cos = torch.tensor([[1.0, 0.6], [0.0, 0.8]])
    torch.testing.assert_close(proto_logits(q, protos, metric="cosine"), 10 * cos)
    torch.testing.assert_close(proto_logits(q, protos, metric="cosine", scale=1.0), cos)


def test_proto_logits_refuse_an_unknown_metric():
    with pytest.raises(TransferkitError, match="'metric'"):
        proto_logits(torch.zeros(1, 2), torch.zeros(2, 2), metric="manhattan")


def test_models_returning_output_objects_are_handled():
    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _net()

        def forward(self, x):
            return type("Output", (), {"logits": self.net(x)})()

    model, (sx, sy, _, _) = Wrapped(), _tasks(tasks=1)
    params = dict(model.named_parameters())
    torch.testing.assert_close(task_loss(model, params, sx[0], sy[0]), F.cross_entropy(model.net(sx[0]), sy[0]))


def test_reptile_epsilon_anneals_linearly_from_meta_step_to_meta_step_final():
    assert reptile_epsilon(0, 10) == 1.0 and reptile_epsilon(5, 10) == 0.5
    assert reptile_epsilon(9, 10) == pytest.approx(0.1)
    assert reptile_epsilon(3, 4, start=0.2, final=0.1) == pytest.approx(0.2 - 0.1 * 3 / 4)
    assert reptile_epsilon(7, 8, start=0.3, final=0.3) == 0.3


def test_dropout_draws_its_own_masks_in_each_task_of_a_meta_batch():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.Dropout(0.5), nn.Tanh(), nn.Linear(6, 3)).double()
    sx, sy, qx, qy = _tasks(tasks=1)
    same = lambda t: t.expand(3, *t.shape[1:])  # three copies of one task
    params = dict(net.named_parameters())
    adapted = adapt_batch(net, params, same(sx), same(sy), steps=1, lr=0.5)
    w = adapted["0.weight"]  # [3, 6, 4]: identical tasks differ only by their dropout masks
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])
    loss = maml_loss(net, params, same(sx), same(sy), same(qx), same(qy), steps=1, lr=0.5)
    loss.backward()
    assert torch.isfinite(loss) and net[0].weight.grad is not None
    net.eval()  # no dropout: the three copies adapt alike
    adapted = adapt_batch(net, params, same(sx), same(sy), steps=1, lr=0.5)
    assert torch.equal(adapted["0.weight"][0], adapted["0.weight"][2])
