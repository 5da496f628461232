"""Continual learning: the maths (pure functions), the buffers, and the strategy contract."""

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


def tiny_stream(multi_head: bool = False):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 24)
    x = (rng.normal(size=(96, 8)) + 3.0 * np.eye(4, 8)[y]).astype(np.float32)
    ds = ArrayDataset(x, y, name="tiny")
    return split_classes(ds, ds, 2, scenario="task" if multi_head else "class", multi_head=multi_head)


# -- the maths ---------------------------------------------------------------------------------------
def test_ewc_penalty_is_zero_at_the_anchor_and_positive_after_a_nudge():
    model = tiny_model()
    strategy = create_continual_strategy("ewc", weight=1.0)
    stream = tiny_stream()
    strategy.after_task(model, stream.experiences[0])
    batch = Batch(torch.zeros(2, 8), torch.zeros(2, dtype=torch.long))
    assert float(strategy.loss_terms(batch, None, model)["penalty"].detach()) == 0.0
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    assert float(strategy.loss_terms(batch, None, model)["penalty"].detach()) > 0.0


def test_quadratic_penalty_by_hand():
    p = {"w": torch.tensor([1.0, 2.0])}
    assert float(Fn.quadratic_penalty(p, {"w": torch.tensor([0.0, 0.0])}, {"w": torch.tensor([2.0, 0.5])})) == 4.0


def test_fisher_one_pass_matches_per_sample_gradients():
    model = tiny_model().eval()
    x, y = torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 0, 1])
    names = [n for n, _ in model.named_parameters()]
    fast = Fn._linear_fisher(model, x, y, names, None)
    slow = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(len(x)):  # the definition: p(y|x) * (d log p(y|x) / d theta)^2, one sample at a time
        model.zero_grad()
        lp = torch.log_softmax(model(x[i:i + 1]).logits, -1)[0, y[i]]
        lp.backward()
        for n, p in model.named_parameters():
            slow[n] += lp.exp().detach() * p.grad.pow(2)
    for n in names:
        torch.testing.assert_close(fast[n], slow[n], rtol=1e-4, atol=1e-7)


def test_si_importances_are_nonzero_after_a_task():
    strategy = create_continual_strategy("si")
    train_stream(tiny_model(), strategy, tiny_stream(), SETTINGS, progress=False)
    importance = strategy.state_of("importance_")
    assert importance and all(float(v.abs().sum()) > 0 for v in importance.values())


def test_lwf_adds_nothing_on_the_first_task_and_distils_after():
    model, strategy, stream = tiny_model(), create_continual_strategy("lwf"), tiny_stream()
    strategy.prepare_model(model)
    batch = Batch(torch.randn(4, 8), torch.zeros(4, dtype=torch.long))
    assert strategy.loss_terms(batch, model(batch.x), model) == {}
    strategy.after_task(model, stream.experiences[0])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    assert float(strategy.loss_terms(batch, model(batch.x), model)["distill"].detach()) > 0


def test_agem_projection_never_points_against_the_memory_gradient():
    g = torch.manual_seed(0) and torch.randn(50)
    for _ in range(20):
        g, ref = torch.randn(50), torch.randn(50)
        projected = Fn.agem_project(g, ref)
        assert float(projected @ ref) >= -1e-5
        if float(g @ ref) >= 0:
            assert torch.equal(projected, g)


def test_agem_strategy_projects_the_model_gradient():
    model, stream = tiny_model(), tiny_stream()
    strategy = create_continual_strategy("agem", size=20, batch_size=16)
    strategy.after_task(model, stream.experiences[0])
    x, y = stream.experiences[1].train[list(range(8))]
    torch.nn.functional.cross_entropy(model(x).logits, y).backward()
    strategy.after_backward(model, Batch(x, y))
    mem = strategy.buffer.all()
    ref = torch.autograd.grad(torch.nn.functional.cross_entropy(model(mem["x"]).logits, mem["y"]), list(model.parameters()))
    dot = sum(float((p.grad * r).sum()) for p, r in zip(model.parameters(), ref))
    assert dot >= -1e-5


def test_herding_picks_distinct_samples_nearest_the_mean_first():
    f = torch.randn(30, 5)
    idx = Fn.herding(f, 10)
    assert len(set(idx.tolist())) == 10
    n = torch.nn.functional.normalize(f, dim=1)
    assert int(idx[0]) == int((n - n.mean(0)).norm(dim=1).argmin())


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
    res = train_stream(model, strategy, stream, SETTINGS, progress=False)
    R = res.matrices["task_il" if multi else "class_il"]
    assert len(R) == 2 and all(0.0 <= a <= 1.0 for row in R for a in row)
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
                                      ("der", {"fill": "later"})])
def test_bad_parameters_are_rejected_by_name(name, bad):
    with pytest.raises(TransferkitError, match=repr(next(iter(bad)))[1:-1]):
        create_continual_strategy(name, **bad)


def test_unknown_strategy_suggests_a_name():
    with pytest.raises(TransferkitError, match="Did you mean 'ewc'"):
        create_continual_strategy("ewcc")


def test_compositions_and_transfer_strategies_combine():
    s = create_continual_strategy("lwf+er", lwf={"weight": 0.5}, er={"size": 10})
    assert s.name == "compose" and s.label == "lwf+er"
    res = train_stream(tiny_model(), s, tiny_stream(), SETTINGS, progress=False)
    assert len(res.matrices["class_il"]) == 2


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
