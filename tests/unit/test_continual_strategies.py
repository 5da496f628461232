"""Continual strategies checked against hand computations: one head per task (each sample through
its own head), LwF's heads, cache and scaling, SI's clamp, EWC's Fisher kinds and growing
parameter sets, iCaRL's loss, checks and nearest-mean prediction, DER's terms, task-IL masks,
FWT and how reports show it."""

import copy
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.unit.test_continual import SETTINGS, Params, linear_model, step, tiny_model, tiny_stream, value
from transferkit.continual import create_continual_strategy
from transferkit.continual import functional as Fn
from transferkit.runs.learner import ContinualResult, add_task_heads, evaluate_stream, train_stream
from transferkit.continual.naive import Naive
from transferkit.data.datasets import ArrayDataset
from transferkit.data.streams import permuted, split_classes
from transferkit.errors import TransferkitError
from transferkit.finetune.base import Batch


def multi_head(classes: int = 4):
    """A task-incremental stream with one 2-way head per task, and a model with those heads."""
    stream = tiny_stream(multi_head=True, classes=classes)
    model = tiny_model(2)
    add_task_heads(model, stream)
    return stream, model


def trainer_loss(strategy, model, batch: Batch) -> torch.Tensor:
    """The loss one training step of the trainer backpropagates for ``batch``."""
    batch = strategy.prepare_batch(batch)
    out = model(batch.x, task=batch.task, precomputed=batch.precomputed)
    terms = strategy.named_loss_terms(batch, out, model)
    return strategy.task_weight() * F.cross_entropy(out.logits, batch.targets) + sum(terms.values())


def own_head_ce(model, x, y, heads: list[str]) -> torch.Tensor:
    """The definition: each row through its own head, one row at a time, then the mean."""
    y = torch.as_tensor(y)
    return torch.stack([F.cross_entropy(model(x[i:i + 1], task=h).logits, y[i:i + 1]) for i, h in enumerate(heads)]).mean()


def flat_grad(loss, params) -> torch.Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                      for g, p in zip(torch.autograd.grad(loss, params, allow_unused=True), params)])


# -- one head per task: replay through each sample's own head ----------------------------------------
def test_er_replays_each_sample_through_its_own_head():
    stream, model = multi_head()
    er = create_continual_strategy("er", size=4, batch_size=4)
    e1, e2 = stream.experiences
    er.before_task(model, e1)
    x1, y1 = e1.train[[0, 1, 30, 31]]  # both classes of task 1
    er.after_step(model, Batch(x1, torch.as_tensor(y1), task="task1"), None)
    er.before_task(model, e2)
    x2, y2 = e2.train[[0, 1, 30, 31]]
    loss = trainer_loss(er, model, Batch(x2, torch.as_tensor(y2), task="task2"))
    mem = er.buffer.all()
    expected = own_head_ce(model, torch.cat([x2, mem["x"]]), torch.cat([torch.as_tensor(y2), mem["y"]]),
                           ["task2"] * 4 + ["task1"] * 4)
    torch.testing.assert_close(loss, expected)
    assert mem["head"].tolist() == [0, 0, 0, 0]  # stored beside each sample: the position of head task1


@pytest.mark.parametrize("name", ["er", "derpp", "agem", "joint"])
def test_an_earlier_task_head_keeps_learning_from_its_replayed_samples(name):
    stream, model = multi_head()
    heads = []
    train_stream(model, create_continual_strategy(name), stream, SETTINGS, progress=False,
                 on_task=lambda r: heads.append(model.heads["task1"].weight.detach().clone()))
    assert not torch.equal(heads[0], heads[1])  # task 1's head trained during task 2


def test_der_matches_stored_logits_through_each_sample_own_head():
    stream, model = multi_head()
    der = create_continual_strategy("derpp", size=4, batch_size=4, weight=0.3, replay_weight=0.5, single_batch=True)
    e1, e2 = stream.experiences
    x1, y1 = e1.train[[0, 1, 30, 31]]
    y1 = torch.as_tensor(y1)
    der.after_step(model, Batch(x1, y1, task="task1"), model(x1, task="task1"))
    with torch.no_grad():
        model.heads["task1"].bias.add_(1.0)  # every logit of head task1 is now 1 above the stored one
    x2, y2 = e2.train[[0, 1, 30, 31]]
    terms = der.loss_terms(Batch(x2, torch.as_tensor(y2), task="task2"), model(x2, task="task2"), model)
    assert value(terms["logits"]) == pytest.approx(0.3 * 1.0)
    torch.testing.assert_close(terms["replay"], 0.5 * own_head_ce(model, x1, y1, ["task1"] * 4))


def test_agem_reference_gradient_goes_through_each_sample_own_head():
    stream, model = multi_head()
    agem = create_continual_strategy("agem", size=8, batch_size=8)
    agem.after_task(model, stream.experiences[0])  # 8 // 2 tasks = 4 examples of task 1
    mem = agem.buffer.all()
    params = list(model.parameters())
    ref = flat_grad(own_head_ce(model, mem["x"], mem["y"], ["task1"] * len(mem["y"])), params)
    g = -ref + 0.1 * torch.randn(len(ref), generator=torch.Generator().manual_seed(0)) * ref.abs().max()
    assert float(g @ ref) < 0
    offset = 0
    for p in params:
        p.grad = g[offset:offset + p.numel()].view_as(p).clone()
        offset += p.numel()
    x2, y2 = stream.experiences[1].train[[0, 1]]
    agem.after_backward(model, Batch(x2, torch.as_tensor(y2), task="task2"))
    after = torch.cat([p.grad.flatten() for p in params])
    torch.testing.assert_close(after, g - float(g @ ref) / float(ref @ ref) * ref, rtol=1e-4, atol=1e-6)


def test_joint_trains_each_task_rows_through_their_own_head():
    stream, model = multi_head()
    joint = create_continual_strategy("joint")
    e1, e2 = stream.experiences
    joint.before_task(model, e2)
    data = joint.prepare_data(model, e2.train, None)
    assert len(data) == len(e1.train) + len(e2.train)
    idx = torch.tensor([0, 30, 60, 90])  # rows of task 1 come first in the union
    x, y = data[idx]
    y = torch.as_tensor(y)
    loss = trainer_loss(joint, model, Batch(x, y, task="task2", index=idx))
    torch.testing.assert_close(loss, own_head_ce(model, x, y, ["task1", "task1", "task2", "task2"]))
    assert joint.prepare_data(model, e1.test, None) is e1.test  # a validation set stays as it is
    with pytest.raises(TransferkitError, match="num_workers"):
        trainer_loss(joint, model, Batch(x, y, task="task2"))


def test_icarl_refuses_one_head_per_task_and_domain_incremental_streams(tmp_path):
    stream, model = multi_head()
    with pytest.raises(TransferkitError, match="multi_head"):
        train_stream(model, create_continual_strategy("icarl"), stream, SETTINGS, progress=False)
    ds = ArrayDataset(torch.rand(40, 8), np.repeat(np.arange(4), 10))
    domain = permuted(ds, ds, 2)
    with pytest.raises(TransferkitError, match="domain-incremental"):
        train_stream(tiny_model(), create_continual_strategy("icarl"), domain, SETTINGS, progress=False)
    icarl = create_continual_strategy("icarl")
    icarl.old_classes = torch.tensor([0, 1])
    with pytest.raises(TransferkitError, match=r"repeats classes \[1\]"):
        icarl.before_task(tiny_model(), SimpleNamespace(name="t2", classes=[1, 2], head=None))


def test_a_strategy_that_cannot_learn_the_stream_fails_before_the_run_directory(tmp_path):
    from transferkit.runs.continual import run_continual

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(40, 8)).astype(np.float32), y=np.repeat(np.arange(4), 10))
    cfg = {"stream": {"kind": "permuted", "dataset": str(tmp_path / "d.npz"), "tasks": 2},
           "model": {"backbone": "mlp", "backbone_args": {"in_features": 8, "hidden": [8]}},
           "strategy": {"name": "icarl"}, "train": {"epochs": 1, "batch_size": 8}}
    with pytest.raises(TransferkitError, match="domain-incremental"):
        run_continual(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


# -- LwF ---------------------------------------------------------------------------------------------
def kl_at(student: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)), batch mean, written out."""
    p = torch.softmax(teacher / t, -1)
    return (p * (p.log() - torch.log_softmax(student / t, -1))).sum(-1).mean()


def test_lwf_distils_only_the_heads_of_earlier_tasks():
    stream, model = multi_head(classes=6)  # three tasks: during task 2, head task3 is untrained
    lwf = create_continual_strategy("lwf", weight=1.0, temperature=1.0)
    lwf.after_task(model, stream.experiences[0])
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x, y = stream.experiences[1].train[[0, 1, 30, 31]]
    terms = lwf.loss_terms(Batch(x, torch.as_tensor(y), task="task2"), model(x, task="task2"), model)
    with torch.no_grad():
        teacher = lwf.old(x, task="task1").logits
    torch.testing.assert_close(terms["distill"], kl_at(model(x, task="task1").logits, teacher, 1.0))


def test_lwf_follows_the_paper_without_the_t2_factor_unless_asked():
    model = linear_model([[1.0, 0.0], [0.0, 1.0]])
    x = torch.tensor([[2.0, -1.0], [0.0, 1.0]])
    batch = Batch(x, torch.zeros(2, dtype=torch.long))
    values = {}
    for scaled in (False, True):
        lwf = create_continual_strategy("lwf", weight=1.0, temperature=2.0, t2_scaling=scaled)
        lwf.after_task(model, SimpleNamespace(classes=[0, 1], head=None))
        student = copy.deepcopy(model)
        with torch.no_grad():
            student.heads["main"].weight.mul_(0.5)
        values[scaled] = value(lwf.loss_terms(batch, student(x), student)["distill"])
    expected = float(kl_at(0.5 * x, x, 2.0))
    assert values[False] == pytest.approx(expected) and values[True] == pytest.approx(4.0 * expected)
    # kd_loss itself keeps Hinton's T^2 by default (KD uses it)
    assert float(Fn.kd_loss(0.5 * x, x, 2.0)) == pytest.approx(4.0 * expected)
    with pytest.raises(TransferkitError, match="'t2_scaling'"):
        create_continual_strategy("lwf", t2_scaling="yes")


def test_lwf_teacher_cache_survives_preparing_a_validation_set():
    model, stream = tiny_model(), tiny_stream()
    lwf = create_continual_strategy("lwf")
    lwf.after_task(model, stream.experiences[0])
    train, val = stream.experiences[1].train, stream.experiences[0].test
    idx = torch.tensor([3, 0, 7])
    x, y = train[idx]
    with torch.no_grad():
        direct = lwf.old(x).logits
    phase = SimpleNamespace(precomputed=False)
    lwf.prepare_data(model, train, phase)  # the trainer prepares the training set, then the validation set
    lwf.prepare_data(model, val, phase)
    torch.testing.assert_close(lwf._teacher_out(Batch(x, torch.as_tensor(y), index=idx)).logits, direct)
    other = SimpleNamespace(precomputed=False)  # in the other order the first lookup notices and forwards instead
    lwf.prepare_data(model, val, other)
    lwf.prepare_data(model, train, other)
    torch.testing.assert_close(lwf._teacher_out(Batch(x, torch.as_tensor(y), index=idx)).logits, direct)


# -- SI ----------------------------------------------------------------------------------------------
def test_si_importance_is_clamped_at_zero():
    """A weight moved along its gradient (momentum, weight decay or a penalty can do that) has a
    negative path integral; its importance is 0, not negative (Zenke et al.'s code: relu)."""
    model = Params(w=[0.0, 0.0])
    si = create_continual_strategy("si", damping=1.0)
    si.before_task(model, None)
    step(model, {"w": [1.0, -1.0]}, {"w": [1.0, 1.0]})  # -g * delta = (-1, +1)
    si.after_step(model, None, None)
    si.after_task(model, None)
    assert si.state_of("importance_")["w"].tolist() == [0.0, 0.5]  # (max(0, -1 / 2), 1 / (1 + 1))


# -- EWC ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,bias", [("empirical", [4 / 9, 1 / 9, 1 / 9]), ("mammoth", [4 / 27, 1 / 27, 1 / 27]),
                                       ("true", [2 / 9, 2 / 9, 2 / 9])])
def test_fisher_kinds_by_hand(kind, bias):
    """Zero weights: p = 1/3 for each of 3 classes; label 0. d log p_0 / d logits = (2/3, -1/3, -1/3).
    empirical: its square; mammoth: times p_0 = 1/3; true: sum_c p_c (e_c - p)^2 = p (1 - p) = 2/9."""
    model = linear_model(torch.zeros(3, 2).tolist())
    x, y = torch.tensor([[1.0, 2.0]]), torch.tensor([0])
    names = [n for n, _ in model.named_parameters()]
    for fisher in (Fn.fisher_diagonal(model, x, y, names, kind=kind), Fn._func_fisher(model, x, y, names, None, kind)):
        torch.testing.assert_close(fisher["heads.main.bias"], torch.tensor(bias))
        torch.testing.assert_close(fisher["heads.main.weight"], torch.tensor(bias).outer(torch.tensor([1.0, 4.0])))


@pytest.mark.parametrize("kind", ["empirical", "true", "mammoth"])
def test_fisher_one_pass_and_torch_func_match_the_definition(kind):
    model = tiny_model().eval()
    x, y = torch.randn(5, 8), torch.tensor([0, 1, 2, 3, 0])
    names = [n for n, _ in model.named_parameters()]
    slow = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(len(x)):  # one sample and one label at a time
        log_p = torch.log_softmax(model(x[i:i + 1]).logits, -1)[0]
        labels = range(4) if kind == "true" else [int(y[i])]
        for c in labels:
            g = torch.autograd.grad(log_p[c], list(model.parameters()), retain_graph=True)
            w = 1.0 if kind == "empirical" else float(log_p[c].detach().exp())
            for (n, _), gi in zip(model.named_parameters(), g):
                slow[n] += w * gi.pow(2)
    for fast in (Fn._linear_fisher(model, x, y, names, None, kind), Fn._func_fisher(model, x, y, names, None, kind)):
        for n in names:
            torch.testing.assert_close(fast[n], slow[n], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", ["ewc", "oewc"])
def test_ewc_on_one_head_per_task(name):
    """The Fisher of a head that did not run (the other task's) is zero; the rest as torch.func gives it."""
    stream, model = multi_head()
    strategy = create_continual_strategy(name, weight=1.0)
    strategy.after_task(model, stream.experiences[0])
    fisher = strategy.state_of("fisher0_")
    assert float(fisher["heads.task2.weight"].abs().sum()) == 0.0 and float(fisher["heads.task2.bias"].abs().sum()) == 0.0
    x, y = stream.experiences[0].train[list(range(len(stream.experiences[0].train)))]
    names = [n for n, _ in model.named_parameters()]
    reference = Fn._func_fisher(model.eval(), x, torch.as_tensor(y), names, "task1", "mammoth")
    for n in names:
        torch.testing.assert_close(fisher[n], reference[n] / len(x), rtol=1e-4, atol=1e-7)
    res = train_stream(model, strategy, stream, SETTINGS, progress=False)
    assert len(res.matrices["task_il"]) == 2


def set_trainable(module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def full_fisher(model, exp) -> dict[str, torch.Tensor]:
    x, y = exp.train[list(range(len(exp.train)))]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    return {k: v / len(x) for k, v in Fn.fisher_diagonal(model.eval(), x, torch.as_tensor(y), names).items()}


def test_online_ewc_decays_the_running_fisher_by_gamma_and_anchors_at_the_latest_weights():
    model, stream = tiny_model(), tiny_stream()
    oewc = create_continual_strategy("oewc", gamma=0.25)
    f1 = full_fisher(model, stream.experiences[0])
    oewc.after_task(model, stream.experiences[0])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    f2 = full_fisher(model, stream.experiences[1])
    oewc.after_task(model, stream.experiences[1])
    for n, p in model.named_parameters():
        torch.testing.assert_close(oewc.state_of("fisher0_")[n], 0.25 * f1[n] + f2[n], rtol=1e-4, atol=1e-8)
        assert torch.equal(oewc.state_of("anchor0_")[n], p.detach())


def test_ewc_when_the_trainable_set_grows_between_tasks():
    """Task 1 trains the head only, task 2 the whole model: the backbone joins the penalty then."""
    stream = tiny_stream()
    for name in ("oewc", "ewc"):
        model = tiny_model()
        strategy = create_continual_strategy(name, weight=1.0, gamma=0.5)
        set_trainable(model.backbone, False)
        f1 = full_fisher(model, stream.experiences[0])
        strategy.after_task(model, stream.experiences[0])
        set_trainable(model.backbone, True)
        f2 = full_fisher(model, stream.experiences[1])
        strategy.after_task(model, stream.experiences[1])
        if name == "oewc":
            fisher = strategy.state_of("fisher0_")
            for n in f2:
                expected = 0.5 * f1[n] + f2[n] if n in f1 else f2[n]
                torch.testing.assert_close(fisher[n], expected, rtol=1e-4, atol=1e-8)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05)
        params = dict(model.named_parameters())
        merged = strategy.loss_terms(None, None, model)["penalty"]
        by_task = sum(Fn.quadratic_penalty(params, strategy.state_of(f"anchor{t}_"), strategy.state_of(f"fisher{t}_"))
                      for t in range(1 if name == "oewc" else 2))
        torch.testing.assert_close(merged, by_task, rtol=1e-4, atol=1e-7)


# -- iCaRL -------------------------------------------------------------------------------------------
def bce(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits, written out: log(1 + e^z) - t z, mean."""
    return (torch.log1p(torch.exp(z)) - t * z).mean()


def test_icarl_loss_covers_only_the_classes_seen_so_far():
    stream, model = tiny_stream(classes=6), tiny_model(6)
    icarl = create_continual_strategy("icarl", size=12)
    e1, e2 = stream.experiences[:2]
    icarl.before_task(model, e1)
    x, y = e1.train[[0, 30]]
    y = torch.as_tensor(y)
    out = model(x)
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(icarl.loss_terms(Batch(x, y), out, model)["bce"], bce(out.logits[:, :2], target))
    assert icarl.task_weight() == 0.0
    icarl.after_task(model, e1)
    icarl.before_task(model, e2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    x, y = e2.train[[0, 30]]
    y = torch.as_tensor(y)
    out = model(x)
    with torch.no_grad():
        old = torch.sigmoid(icarl.old(x).logits[:, :2])  # earlier classes: the previous model's outputs
    target = torch.cat([old, torch.tensor([[1.0, 0.0], [0.0, 1.0]])], 1)
    torch.testing.assert_close(icarl.loss_terms(Batch(x, y), out, model)["bce"], bce(out.logits[:, :4], target))


def test_icarl_predicts_the_nearest_mean_of_exemplars():
    """Identity features; class 0 examples are e0 and 2 e0, class 1 examples e1: the normalised
    means are e0 and e1, so scores are minus the distances of x / |x| to them; unseen classes -inf."""
    x = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 1.0], [1.0, 1.0]])
    ds = ArrayDataset(x, np.array([0, 0, 1, 1, 2, 3]))
    stream = split_classes(ds, ds, 2)
    model = linear_model(torch.randn(4, 2).tolist())
    icarl = create_continual_strategy("icarl", size=4)
    icarl.before_task(model, stream.experiences[0])
    icarl.after_task(model, stream.experiences[0])
    assert icarl.memory.all()["y"].tolist() == [0, 0, 1, 1]
    query = torch.tensor([[3.0, 1.0]])
    u = query / query.norm()
    expected = [-float((u - torch.tensor([1.0, 0.0])).norm()), -float((u - torch.tensor([0.0, 1.0])).norm())]
    scores = icarl.predict(model, query)
    assert scores[0, :2].tolist() == pytest.approx(expected) and scores[0, 2:].tolist() == [-math.inf, -math.inf]
    acc = evaluate_stream(model, icarl, stream)  # class-IL reads the nearest mean: task 1 right, task 2 never predicted
    assert acc["class_il"] == [1.0, 0.0]


# -- DER / DER++ on one head -------------------------------------------------------------------------
def test_der_and_derpp_terms_by_hand():
    model = linear_model([[1.0, 0.0], [0.0, 1.0]], bias=[0.0, 0.0])
    x, y = torch.tensor([[1.0, 2.0], [3.0, -1.0]]), torch.tensor([1, 0])
    for name, kw in (("der", {"weight": 0.4}), ("derpp", {"weight": 0.4, "replay_weight": 2.0})):
        der = create_continual_strategy(name, size=2, **kw)
        der.after_step(model, Batch(x, y), model(x))  # stored logits = x
        assert der.loss_terms(Batch(x, y), model(x), model)["logits"].item() == 0.0
        with torch.no_grad():
            model.heads["main"].bias.copy_(torch.tensor([1.0, -2.0]))  # logits now x + (1, -2)
        terms = der.loss_terms(Batch(x, y), model(x), model)
        assert value(terms["logits"]) == pytest.approx(0.4 * (1 + 4) / 2)  # MSE over all 4 entries
        if name == "derpp":  # CE of logits (2, 0) with label 1 and (4, -3) with label 0
            ce = (math.log(1 + math.exp(2.0)) + math.log(1 + math.exp(-7.0))) / 2
            assert value(terms["replay"]) == pytest.approx(2.0 * ce)
        else:
            assert set(terms) == {"logits"}
        with torch.no_grad():
            model.heads["main"].bias.zero_()


# -- evaluation: task-IL masks, FWT, and how reports show it -----------------------------------------
def test_task_il_masks_the_other_tasks_classes():
    """A model that always scores class 2 highest (bias 1, 0, 3, 2): class-IL predicts 2 everywhere;
    task-IL predicts the best of the task's own classes (0 in task 1, 2 in task 2)."""
    model = linear_model(torch.zeros(4, 8).tolist(), bias=[1.0, 0.0, 3.0, 2.0])
    acc = evaluate_stream(model, Naive(), tiny_stream())
    assert acc == {"class_il": [0.0, 0.5], "task_il": [0.5, 0.5]}


def test_fwt_is_measured_against_the_untrained_model_and_left_out_in_class_il():
    model, stream = tiny_model(), tiny_stream()
    before = evaluate_stream(copy.deepcopy(model), Naive(), stream)
    res = train_stream(model, create_continual_strategy("naive"), stream, SETTINGS, progress=False)
    assert res.random_init == before
    R, b = res.matrices["task_il"], res.random_init["task_il"]
    assert res.summary()["task_il"]["fwt"] == pytest.approx(R[0][1] - b[1])
    assert "fwt" not in res.summary()["class_il"]


def test_reports_show_fwt_as_not_applicable_in_class_il(tmp_path):
    from transferkit.report.continual import continual_report

    res = ContinualResult("s", "class", "naive", ["t1", "t2"],
                          matrices={"class_il": [[0.9, 0.0], [0.1, 0.9]], "task_il": [[0.9, 0.6], [0.8, 0.9]]},
                          random_init={"class_il": [0.3, 0.2], "task_il": [0.5, 0.5]},
                          per_task=[{"task": i + 1, "name": f"t{i + 1}", "seconds": 1.0, "peak_memory_mb": 1.0,
                                     "buffer_bytes": 0, "new_params": 0} for i in range(2)])
    (tmp_path / "results.json").write_text(json.dumps(res.to_dict()))  # the report reads run files only
    continual_report(tmp_path, "t")
    rows = (tmp_path / "comparison.csv").read_text().splitlines()
    assert rows[0].split(",")[:6] == ["strategy", "setting", "average_accuracy", "forgetting", "bwt", "fwt"]
    assert rows[1].split(",")[5] == "n/a" and float(rows[2].split(",")[5]) == pytest.approx(100 * (0.6 - 0.5))
    html = (tmp_path / "report.html").read_text()
    assert "<td>n/a</td>" in html and "FWT is n/a in class-IL" in html
