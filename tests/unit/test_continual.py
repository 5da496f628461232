"""Continual learning: the maths (pure functions), the buffers, and the strategy contract."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from scipy.stats import chisquare

from transferkit.backbones import create_backbone
from transferkit.config import TrainSettings
from transferkit.continual import CONTINUAL, create_continual_strategy
from transferkit.runs.learner import train_stream
from transferkit.continual import functional as Fn
from transferkit.continual.buffers import ClassBalancedBuffer, ReservoirBuffer
from transferkit.data.datasets import ArrayDataset
from transferkit.data.streams import permuted, split_classes
from transferkit.errors import TransferkitError
from transferkit.finetune.base import Batch
from transferkit.heads import create_head
from transferkit.metrics.continual import average_accuracy, backward_transfer, forgetting, forward_transfer
from transferkit.model import TransferModel

SETTINGS = TrainSettings(epochs=1, batch_size=8, lr=0.05, optimizer="sgd", momentum=0.0)


def tiny_model(classes: int = 4, seed: int = 0) -> TransferModel:
    torch.manual_seed(seed)
    backbone = create_backbone("mlp", in_features=8, hidden=(16, 16))
    return TransferModel(backbone, create_head("linear", 16, classes))


def tiny_stream(multi_head: bool = False, classes: int = 4):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(classes), 24)
    x = (rng.normal(size=(24 * classes, 8)) + 3.0 * np.eye(classes, 8)[y]).astype(np.float32)
    ds = ArrayDataset(x, y, name="tiny")
    return split_classes(ds, ds, 2, scenario="task" if multi_head else "class", multi_head=multi_head)


class Params(torch.nn.Module):
    """A "model" that is just named parameters, for strategies whose maths reads only those."""

    def __init__(self, **values) -> None:
        super().__init__()
        for name, v in values.items():
            self.register_parameter(name, torch.nn.Parameter(torch.tensor(v, dtype=torch.float32)))


def value(t: torch.Tensor) -> float:
    return float(t.detach())


def step(model, grads: dict, values: dict) -> None:
    """Set each parameter's gradient and new value, as one optimizer step would leave them."""
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.grad = torch.tensor(grads[n])
            p.copy_(torch.tensor(values[n]))


# -- the maths ---------------------------------------------------------------------------------------
def test_ewc_penalty_by_hand_for_a_known_fisher_and_anchor():
    model = Params(w=[1.0, 2.0], b=[0.5])
    strategy = create_continual_strategy("ewc", weight=3.0)
    strategy.set_params("fisher0_", {"w": torch.tensor([2.0, 0.5]), "b": torch.tensor([4.0])})
    strategy.set_params("anchor0_", {"w": torch.tensor([0.0, 0.0]), "b": torch.tensor([0.5])})
    strategy.tasks += 1
    # 3 * (2 * 1^2 + 0.5 * 2^2 + 4 * 0^2) = 12
    assert value(strategy.loss_terms(None, None, model)["penalty"]) == pytest.approx(12.0)
    # a second task anchored at w = (1, 1), b = 0 with Fisher (1, 1), (1):
    strategy.set_params("fisher1_", {"w": torch.tensor([1.0, 1.0]), "b": torch.tensor([1.0])})
    strategy.set_params("anchor1_", {"w": torch.tensor([1.0, 1.0]), "b": torch.tensor([0.0])})
    strategy.tasks += 1
    # 3 * (12 / 3 + 1 * 0^2 + 1 * 1^2 + 1 * 0.5^2) = 3 * 5.25
    assert value(strategy.loss_terms(None, None, model)["penalty"]) == pytest.approx(15.75)
    with torch.no_grad():
        model.w.copy_(torch.tensor([0.0, 0.0]))
        model.b.copy_(torch.tensor([0.5]))
    # at the first anchor only the second task's term is left: 3 * (1 + 1 + 0.25)
    assert value(strategy.loss_terms(None, None, model)["penalty"]) == pytest.approx(6.75)


def test_quadratic_penalty_by_hand():
    p = {"w": torch.tensor([1.0, 2.0])}
    assert float(Fn.quadratic_penalty(p, {"w": torch.tensor([0.0, 0.0])}, {"w": torch.tensor([2.0, 0.5])})) == 4.0


def test_si_importance_by_hand_along_a_known_path():
    model = Params(w=[0.0, 0.0])
    strategy = create_continual_strategy("si", weight=2.0, damping=0.5)
    strategy.before_task(model, None)
    for grads, values in [({"w": [-1.0, 1.0]}, {"w": [0.5, -1.0]}),  # -g * delta = (0.5, 1.0)
                          ({"w": [-2.0, 0.0]}, {"w": [1.0, -1.0]})]:  # (1.0, 0.0)
        step(model, grads, values)
        strategy.after_step(model, None, None)
    assert strategy.state_of("omega_")["w"].tolist() == [1.5, 1.0]
    strategy.after_task(model, None)
    # Omega = omega / (delta^2 + xi): 1.5 / (1 + 0.5) = 1.0 and 1.0 / (1 + 0.5) = 2/3
    torch.testing.assert_close(strategy.state_of("importance_")["w"], torch.tensor([1.0, 2.0 / 3.0]))
    with torch.no_grad():
        model.w.copy_(torch.tensor([2.0, 0.0]))  # anchored at (1, -1): 2 * (1 * 1^2 + 2/3 * 1^2)
    assert value(strategy.loss_terms(None, None, model)["penalty"]) == pytest.approx(2.0 * (1.0 + 2.0 / 3.0))


def linear_model(weight, bias=None, in_features: int | None = None) -> TransferModel:
    """Identity backbone and a linear head with the given weights: logits = W x + b."""
    weight = torch.tensor(weight, dtype=torch.float32)
    head = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(torch.zeros(weight.shape[0]) if bias is None else torch.tensor(bias))
    return TransferModel(create_backbone("mlp", in_features=in_features or weight.shape[1], hidden=()), head)


def test_lwf_distillation_by_hand():
    """Teacher logits (2, 0, 5), student (0, 0, 0) at T = 2 over the first task's classes {0, 1}:
    KL(softmax(1, 0) || (1/2, 1/2)), times the weight; class 2 (not seen) is left out."""
    model = linear_model([[1.0, 0.0], [0.0, 0.0], [0.0, 5.0]])
    strategy = create_continual_strategy("lwf", weight=0.5, temperature=2.0)
    strategy.prepare_model(model)
    batch = Batch(torch.tensor([[2.0, 1.0]]), torch.zeros(1, dtype=torch.long))
    assert strategy.loss_terms(batch, model(batch.x), model) == {}  # nothing to distil on the first task
    strategy.after_task(model, SimpleNamespace(classes=[0, 1], head=None))
    with torch.no_grad():
        model.heads["main"].weight.zero_()
    p = math.e / (math.e + 1.0)
    kl = p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5)
    assert value(strategy.loss_terms(batch, model(batch.x), model)["distill"]) == pytest.approx(0.5 * kl)


def test_agem_projection_by_hand():
    ref = torch.tensor([1.0, 0.0])
    conflict = Fn.agem_project(torch.tensor([-1.0, 1.0]), ref)  # g.ref = -1 < 0: drop the ref component
    assert conflict.tolist() == [0.0, 1.0] and float(conflict @ ref) == 0.0
    agree = torch.tensor([1.0, 1.0])
    assert Fn.agem_project(agree, ref) is agree  # g.ref >= 0: untouched
    g, r = torch.tensor([-3.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])  # g - (-2 / 2) r
    assert Fn.agem_project(g, r).tolist() == [-2.0, 2.0, 2.0]


def grads_of(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def set_grads(model, flat: torch.Tensor) -> None:
    offset = 0
    for p in model.parameters():
        p.grad = flat[offset:offset + p.numel()].view_as(p).clone()
        offset += p.numel()


def test_agem_strategy_projects_the_model_gradient_when_it_conflicts():
    """A stream gradient against the memory gradient of task 1 comes out orthogonal to it (the
    A-GEM update by hand); one that agrees is left bit-identical."""
    model, stream = tiny_model(), tiny_stream()
    strategy = create_continual_strategy("agem", size=16, batch_size=16)
    strategy.after_task(model, stream.experiences[0])
    mem = strategy.buffer.all()
    ref = torch.autograd.grad(torch.nn.functional.cross_entropy(model(mem["x"]).logits, mem["y"]), list(model.parameters()))
    ref = torch.cat([r.flatten() for r in ref])
    noise = torch.randn(len(ref), generator=torch.Generator().manual_seed(0)) * ref.norm() / len(ref) ** 0.5
    for sign in (-1.0, 1.0):
        g = sign * ref + noise
        conflict = float(g @ ref) < 0
        assert conflict == (sign < 0)
        set_grads(model, g)
        strategy.after_backward(model, Batch(mem["x"], mem["y"]))
        after = grads_of(model)
        if conflict:
            torch.testing.assert_close(after, g - float(g @ ref) / float(ref @ ref) * ref)
            assert abs(float(after @ ref)) < 1e-5 * float(g.norm() * ref.norm())
        else:
            assert torch.equal(after, g)


def brute_force_herding(f: torch.Tensor, m: int) -> list[int]:
    """The definition (Rebuffi et al., 2017, Algorithm 4), one candidate at a time."""
    f = [[a / math.sqrt(sum(b * b for b in v)) for a in v] for v in f.double().tolist()]
    mu = [sum(col) / len(f) for col in zip(*f)]
    chosen: list[int] = []
    for k in range(1, m + 1):
        best, best_d = None, math.inf
        for i in range(len(f)):
            if i in chosen:
                continue
            mean = [(sum(f[j][d] for j in chosen) + f[i][d]) / k for d in range(len(mu))]
            dist = math.sqrt(sum((a - b) ** 2 for a, b in zip(mu, mean)))
            if dist < best_d:
                best, best_d = i, dist
        chosen.append(best)
    return chosen


def test_herding_selection_order_equals_the_definition():
    torch.manual_seed(0)
    f = torch.randn(30, 5, dtype=torch.float64)
    assert Fn.herding(f, 12).tolist() == brute_force_herding(f, 12)
    assert sorted(Fn.herding(f, 40).tolist()) == list(range(30))  # asking for more returns each sample once


def test_metrics_by_hand():
    R = [[0.9, 0.1, 0.0], [0.7, 0.8, 0.2], [0.6, 0.5, 0.9]]
    assert average_accuracy(R) == pytest.approx(2.0 / 3.0)
    assert forgetting(R) == pytest.approx(((0.9 - 0.6) + (0.8 - 0.5)) / 2)
    assert backward_transfer(R) == pytest.approx(((0.6 - 0.9) + (0.5 - 0.8)) / 2)
    assert forward_transfer(R, [0.1, 0.1, 0.1]) == pytest.approx(((0.1 - 0.1) + (0.2 - 0.1)) / 2)
    with pytest.raises(ValueError, match="square"):
        average_accuracy([[0.1, 0.2]])


# -- buffers -----------------------------------------------------------------------------------------
def test_reservoir_never_exceeds_its_size_and_holds_a_uniform_sample():
    torch.manual_seed(0)
    size, n, bins, reps = 50, 2000, 10, 200
    counts = np.zeros(bins)
    for _ in range(reps):
        buf = ReservoirBuffer(size)
        for start in range(0, n, 10):
            ids = torch.arange(start, start + 10)
            buf.add(ids.float().view(-1, 1), ids)
            assert len(buf) <= size
        assert len(buf) == size and len(torch.unique(buf.all()["y"])) == size
        counts += np.bincount(buf.all()["y"].numpy() * bins // n, minlength=bins)
    # each tenth of the stream should hold a tenth of the samples
    assert chisquare(counts).pvalue > 0.001


def test_buffer_stores_8bit_images_as_uint8():
    buf = ReservoirBuffer(100)
    x = torch.randint(0, 256, (10, 1, 28, 28)).float() / 255
    buf.add(x, torch.arange(10))
    assert buf.x.dtype == torch.uint8 and buf.nbytes < 100 * 784 + 100 * 8 + 64
    assert torch.equal(buf.get(torch.arange(10))["x"], x)
    buf.add(torch.rand(5, 1, 28, 28) * 0.5, torch.arange(5))  # not 8-bit: storage widens, nothing is lost
    assert buf.x.dtype == torch.float32 and torch.equal(buf.get(torch.arange(10))["x"], x)


def test_class_balanced_buffer_keeps_classes_balanced():
    torch.manual_seed(0)
    buf = ClassBalancedBuffer(40)
    for c in range(4):  # a class-incremental stream: 100 of class 0, then 100 of class 1 ...
        for _ in range(10):
            buf.add(torch.rand(10, 3), torch.full((10,), c))
    assert torch.bincount(buf.all()["y"], minlength=4).tolist() == [10, 10, 10, 10]


# -- the strategy contract, over the whole registry --------------------------------------------------
@pytest.mark.parametrize("name", CONTINUAL.names())
def test_every_strategy_learns_a_stream_and_its_state_survives_save_and_load(name, tmp_path):
    multi = name == "task_adapters"
    stream = tiny_stream(multi_head=multi)
    strategy = create_continual_strategy(name)
    model = tiny_model(2 if multi else 4)
    res = train_stream(model, strategy, stream, SETTINGS.model_copy(update={"epochs": 3, "lr": 0.1}), progress=False)
    R = res.matrices["task_il"]
    assert len(R) == 2 and len(R[0]) == 2
    # each task is learned when trained (chance: 0.5 between its two classes)
    assert R[0][0] >= 0.75 and R[1][1] >= 0.75, R
    state = strategy.state_dict()
    if state:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "s.safetensors"))
        fresh = create_continual_strategy(name)
        fresh.prepare_model(model)
        fresh.load_state_dict(load_file(str(tmp_path / "s.safetensors")))
        for k, v in fresh.state_dict().items():
            assert torch.equal(v, state[k]), k


@pytest.mark.parametrize("name,bad", [("ewc", {"weight": -1.0}), ("si", {"damping": -0.1}), ("er", {"size": 0}),
                                      ("der", {"replay_weight": "x"}), ("agem", {"batch_size": 0}),
                                      ("lwf", {"temperature": 0}), ("icarl", {"size": 0}),
                                      ("er", {"buffer": "fifo"}), ("task_adapters", {"reduction": 0}),
                                      ("der", {"fill": "later"}), ("ewc", {"fisher": "fisherman"}),
                                      ("oewc", {"fisher": 1})])
def test_bad_parameters_are_rejected_by_name(name, bad):
    with pytest.raises(TransferkitError, match=repr(next(iter(bad)))[1:-1]):
        create_continual_strategy(name, **bad)


def test_unknown_strategy_suggests_a_name():
    with pytest.raises(TransferkitError, match="Did you mean 'ewc'"):
        create_continual_strategy("ewcc")


def test_compositions_chain_every_part():
    """lwf+er: replay appends stored rows to the stream batch, then LwF distils over all of them."""
    s = create_continual_strategy("lwf+er", lwf={"weight": 0.5}, er={"size": 10})
    assert s.name == "compose" and s.label == "lwf+er"
    lwf, er = s.parts
    assert (lwf.weight, er.buffer.size) == (0.5, 10)
    model, stream = tiny_model(), tiny_stream()
    train_stream(model, s, stream, SETTINGS, progress=False)
    assert len(er.buffer) == 10 and lwf.old is not None and lwf.old_classes.tolist() == [0, 1, 2, 3]
    x, y = stream.experiences[1].train[list(range(4))]
    batch = s.prepare_batch(Batch(x, y))
    assert len(batch.targets) == 8 and torch.equal(batch.x[:4], x)  # 4 stream rows, then 4 replayed
    out = model(batch.x)
    terms = s.named_loss_terms(batch, out, model)
    with torch.no_grad():
        teacher = lwf.old(batch.x).logits
    assert set(terms) == {"lwf/distill"} and s.task_weight() == 1.0
    torch.testing.assert_close(terms["lwf/distill"], 0.5 * Fn.kd_loss(out.logits, teacher, 2.0, t2_scaling=False))
    lora = create_continual_strategy("er+lora", er={"size": 5}, lora={"r": 2})
    assert [p.name for p in lora.parts] == ["er", "lora"]


def test_task_adapters_forget_nothing_in_task_incremental_learning():
    stream = tiny_stream(multi_head=True)
    res = train_stream(tiny_model(2), create_continual_strategy("task_adapters"), stream, SETTINGS, progress=False)
    R = res.matrices["task_il"]
    assert R[1][0] == R[0][0]  # task 1's accuracy is untouched by learning task 2
    assert res.per_task[1]["new_params"] > 0  # the memory cost of a task


def test_streams_split_permute_and_reject_bad_orders():
    ds = ArrayDataset(torch.rand(40, 1, 4, 4), np.repeat(np.arange(4), 10))
    s = split_classes(ds, ds, 2, order=[3, 2, 1, 0])
    assert [e.classes for e in s.experiences] == [[3, 2], [1, 0]]
    assert set(s.experiences[0].train.targets.tolist()) == {2, 3}
    p = permuted(ds, ds, 3, seed=1)
    x0, _ = p.experiences[0].train[[0, 1]]
    assert torch.equal(torch.sort(x0.flatten(1), dim=1).values, torch.sort(ds.x[:2].flatten(1), dim=1).values)
    with pytest.raises(TransferkitError, match="order"):
        split_classes(ds, ds, 2, order=[0, 1, 2])
    with pytest.raises(TransferkitError, match="classes_per_task"):
        split_classes(ds, ds, 3)


def test_resume_after_a_task_gives_the_same_accuracy_matrix(tmp_path):
    stream = tiny_stream()
    full = train_stream(tiny_model(), create_continual_strategy("er", size=20), stream, SETTINGS, progress=False)

    def stop(record):
        raise KeyboardInterrupt  # the process is stopped once task 1 is checkpointed

    with pytest.raises(KeyboardInterrupt):
        train_stream(tiny_model(), create_continual_strategy("er", size=20), stream, SETTINGS, run_dir=tmp_path,
                     progress=False, on_task=stop)
    resumed = train_stream(tiny_model(seed=5), create_continual_strategy("er", size=20), stream, SETTINGS,
                           run_dir=tmp_path, resume=True, progress=False)
    assert resumed.matrices == full.matrices and resumed.random_init == full.random_init


def test_rotated_and_sequence_streams():
    from transferkit.data.streams import rotated, sequence

    ds = ArrayDataset(np.random.default_rng(0).integers(0, 256, (20, 8, 8)).astype(np.uint8), np.repeat([0, 1], 10))
    r = rotated(ds, ds, 3, seed=0)
    assert r.scenario == "domain" and len(r) == 3
    x, _ = r.experiences[1].train[[0]]
    assert torch.allclose(x * 255, (x * 255).round(), atol=1e-4)  # still 8-bit: replay stores it as uint8
    s = sequence([("a", ds, ds), ("b", ds, ds)])
    assert [e.name for e in s.experiences] == ["a", "b"] and s.experiences[1].seen_train == [ds]
    other = ArrayDataset(np.zeros((20, 4, 4), dtype=np.uint8), np.repeat([0, 1], 10))
    with pytest.raises(TransferkitError, match="image_size"):
        sequence([("a", ds, ds), ("b", other, other)])


def test_joint_training_sees_every_earlier_task():
    stream = tiny_stream()
    res = train_stream(tiny_model(), create_continual_strategy("joint"), stream, SETTINGS, progress=False)
    naive = train_stream(tiny_model(), create_continual_strategy("naive"), stream, SETTINGS, progress=False)
    assert res.matrices["class_il"][-1][0] > naive.matrices["class_il"][-1][0]


def test_ewc_merged_penalty_equals_the_sum_over_tasks():
    model, stream = tiny_model(), tiny_stream()
    strategy = create_continual_strategy("ewc", weight=1.0)
    for exp in stream.experiences:
        strategy.after_task(model, exp)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
    params = dict(model.named_parameters())
    by_task = sum(Fn.quadratic_penalty(params, strategy.state_of(f"anchor{t}_"), strategy.state_of(f"fisher{t}_"))
                  for t in range(2))
    merged = strategy.loss_terms(None, None, model)["penalty"]
    torch.testing.assert_close(merged, by_task, rtol=1e-4, atol=1e-6)
    g1 = torch.autograd.grad(by_task, list(params.values()))
    g2 = torch.autograd.grad(merged, list(params.values()))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_lwf_cached_teacher_outputs_equal_a_teacher_forward():
    model, stream = tiny_model(), tiny_stream()
    strategy = create_continual_strategy("lwf")
    strategy.after_task(model, stream.experiences[0])
    data = stream.experiences[1].train
    strategy.prepare_data(model, data, SimpleNamespace(precomputed=False))
    idx = torch.tensor([3, 0, 7])
    x, y = data[idx]
    cached = strategy._teacher_out(Batch(x, y, index=idx))
    direct = strategy._teacher_out(Batch(x, y))
    torch.testing.assert_close(cached.logits, direct.logits)


@pytest.mark.parametrize("name", ["er", "derpp"])
def test_task_end_fill_keeps_an_equal_share_per_task_or_class(name):
    stream = tiny_stream()
    strategy = create_continual_strategy(name, size=20, fill="task_end")
    train_stream(tiny_model(), strategy, stream, SETTINGS, progress=False)
    stored = strategy.buffer.all()
    assert len(strategy.buffer) == 20
    if name == "er":
        assert torch.bincount(stored["task"]).tolist() == [10, 10]
    else:
        assert torch.bincount(stored["y"]).tolist() == [5, 5, 5, 5] and stored["logits"].shape == (20, 4)


def test_a_stream_starts_from_a_pretrained_source_run(tmp_path):
    """Transfer + lifelong: per-task adapters and heads on the frozen backbone of a source run."""
    from safetensors.torch import load_file as read
    from tests.conftest import tiny_config
    from transferkit import train
    from transferkit.runs.continual import run_continual

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 40)
    np.savez(tmp_path / "four.npz", x=(rng.normal(size=(160, 8)) + 3.0 * np.eye(4, 8)[y]).astype(np.float32), y=y)
    train(tiny_config(tmp_path / "four.npz"), out=tmp_path / "source", progress=False)
    weights = tmp_path / "source" / "model.safetensors"
    cfg = {"stream": {"kind": "split_classes", "dataset": str(tmp_path / "four.npz"), "classes_per_task": 2,
                      "scenario": "task", "multi_head": True},
           "model": {"backbone": "mlp", "backbone_args": {"in_features": 8, "hidden": [16]}, "weights": str(weights)},
           "strategy": {"name": "task_adapters", "args": {"stages": 1}},
           "train": {"epochs": 3, "batch_size": 8, "lr": 0.05, "optimizer": "sgd"}}
    res = run_continual(cfg, tmp_path / "cl", progress=False)["task_adapters"]
    R = res.matrices["task_il"]
    assert R[1][0] == R[0][0] and min(R[1]) > 0.8  # learned both, forgot nothing
    start = {k: v for k, v in read(str(weights)).items() if k.startswith("backbone.")}
    end = read(str(tmp_path / "cl" / "checkpoints" / "task-0001" / "model.safetensors"))
    assert start and all(torch.equal(v, end[k]) for k, v in start.items())  # the source backbone stayed frozen
