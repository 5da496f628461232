"""Continual learning on domain streams of multi-label and regression tasks: the streams, LwF's
distillation by task type (MSE of the outputs for regression), the score matrix (mAP, R²) and the
strategies that refuse such a stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.unit.test_continual import SETTINGS
from transferkit.backbones import create_backbone
from transferkit.continual import create_continual_strategy
from transferkit.data.datasets import ArrayDataset
from transferkit.data.streams import permuted, sequence, split_classes
from transferkit.errors import TransferkitError
from transferkit.finetune.base import Batch
from transferkit.finetune.functional import binary_kd_loss, distillation_loss, kd_loss
from transferkit.heads import create_head
from transferkit.model import TransferModel
from transferkit.runs.learner import evaluate_stream, train_stream
from transferkit.metrics.tasks import mean_average_precision
from transferkit.tasks import create_task


def regression_data(n: int = 96, seed: int = 0, width: int = 1) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    y = (x[:, :width] * 2.0 + 0.5).astype(np.float32)
    return ArrayDataset(x, y[:, 0] if width == 1 else y, name="reg", task="regression")


def multilabel_data(n: int = 96, seed: int = 0) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    y = (x[:, :3] > 0).astype(np.float32)
    return ArrayDataset(x, y, name="ml", task="multilabel")


def model_for(task: str, outputs: int, seed: int = 0) -> TransferModel:
    torch.manual_seed(seed)
    return TransferModel(create_backbone("mlp", in_features=8, hidden=(16,)), create_head("linear", 16, outputs),
                         create_task(task))


def test_distillation_follows_the_task_type():
    s, t = torch.tensor([[0.0, 1.0], [2.0, -1.0]]), torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    assert float(distillation_loss("regression", s, t, 2.0)) == pytest.approx((1 + 0 + 4 + 1) / 4)
    torch.testing.assert_close(distillation_loss("classification", s, t, 2.0, t2_scaling=False),
                               kd_loss(s, t, 2.0, t2_scaling=False))
    # multi-label without T^2: sum over labels of KL(Bern(sigmoid(t/T)) || Bern(sigmoid(s/T))), batch mean
    pt, ps = torch.sigmoid(t / 2), torch.sigmoid(s / 2)
    kl = pt * (pt / ps).log() + (1 - pt) * ((1 - pt) / (1 - ps)).log()
    assert float(distillation_loss("multilabel", s, t, 2.0, t2_scaling=False)) == pytest.approx(
        float(kl.sum(1).mean()), rel=1e-5)
    assert float(binary_kd_loss(s, t, 2.0)) == pytest.approx(4 * float(kl.sum(1).mean()), rel=1e-5)


def test_lwf_on_a_regression_stream_distils_the_outputs_with_mse():
    stream = permuted(regression_data(), regression_data(seed=1), tasks=2, task="regression")
    model = model_for("regression", 1)
    lwf = create_continual_strategy("lwf", weight=0.7)
    lwf.after_task(model, stream.experiences[0])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)  # the student moves away from the frozen teacher
    x = torch.randn(5, 8)
    out = model(x)
    term = lwf.loss_terms(Batch(x, torch.zeros(5)), out, model)["distill"]
    expected = 0.7 * ((out.logits - lwf.old(x).logits) ** 2).mean()
    torch.testing.assert_close(term, expected)
    assert float(term.detach()) > 0


def test_lwf_on_a_multilabel_stream_distils_each_label_without_t2():
    model = model_for("multilabel", 3)
    lwf = create_continual_strategy("lwf", weight=1.0, temperature=2.0)
    stream = permuted(multilabel_data(), multilabel_data(seed=1), tasks=2, task="multilabel")
    lwf.after_task(model, stream.experiences[0])
    with torch.no_grad():
        model.heads["main"][1].weight.add_(0.3)
    x = torch.randn(4, 8)
    out = model(x)
    term = lwf.loss_terms(Batch(x, torch.zeros(4, 3)), out, model)["distill"]
    torch.testing.assert_close(term, binary_kd_loss(out.logits, lwf.old(x).logits, 2.0, t2_scaling=False))


def test_domain_streams_take_multi_hot_rows_and_values():
    s = permuted(regression_data(width=2), regression_data(seed=1, width=2), tasks=3, task="regression")
    assert s.num_classes == 2 and s.task == "regression" and all(e.classes == [] for e in s.experiences)
    m = permuted(multilabel_data(), multilabel_data(seed=1), tasks=2, task="multilabel")
    assert m.num_classes == 3 and m.task == "multilabel"
    seq = sequence([("a", regression_data(), regression_data(seed=1)), ("b", regression_data(seed=2), regression_data(seed=3))],
                   task="regression")
    assert seq.num_classes == 1 and len(seq) == 2
    with pytest.raises(TransferkitError, match="does not match the first of the sequence \\(1 target columns"):
        sequence([("a", regression_data(), regression_data()), ("b", regression_data(width=2), regression_data(width=2))],
                 task="regression")
    with pytest.raises(TransferkitError, match="split_classes stream groups class labels into tasks, and 'reg'"):
        split_classes(regression_data(), regression_data())


def test_a_regression_stream_fills_its_matrix_with_r2():
    stream = permuted(regression_data(), regression_data(seed=1), tasks=2, task="regression")
    model = model_for("regression", 1)
    res = train_stream(model, create_continual_strategy("lwf"), stream, SETTINGS.model_copy(update={"lr": 0.01}),
                       progress=False)
    assert res.metric == "r2" and list(res.matrices) == ["domain_il"] and len(res.matrices["domain_il"]) == 2
    # the last row is R^2 of each task's test set, computed here by hand
    model.eval()
    for j, exp in enumerate(stream.experiences):
        x, y = exp.test[list(range(len(exp.test)))]
        pred = model(x).logits[:, 0].detach()
        y = torch.as_tensor(y)
        r2 = 1 - float(((pred - y) ** 2).sum() / ((y - y.mean()) ** 2).sum())
        assert res.matrices["domain_il"][-1][j] == pytest.approx(r2, abs=1e-5)
    assert res.per_task[-1]["metric"] == "r2"


def test_a_multilabel_stream_fills_its_matrix_with_map():
    stream = permuted(multilabel_data(), multilabel_data(seed=1), tasks=2, task="multilabel")
    model = model_for("multilabel", 3)
    row = evaluate_stream(model, create_continual_strategy("naive"), stream)
    assert list(row) == ["domain_il"]
    for j, exp in enumerate(stream.experiences):
        x, y = exp.test[list(range(len(exp.test)))]
        with torch.no_grad():
            logits = model(x).logits
        assert row["domain_il"][j] == pytest.approx(mean_average_precision(logits, torch.as_tensor(y)), abs=1e-6)


def test_strategies_that_need_class_labels_refuse_a_regression_stream():
    stream = permuted(regression_data(), regression_data(seed=1), tasks=2, task="regression")
    model = model_for("regression", 1)
    for name, args, message in [("ewc", {}, "ewc's Fisher is that of the class probabilities"),
                                ("oewc", {}, "oewc's Fisher is that of the class probabilities"),
                                ("er", {"buffer": "class_balanced"}, "er: a class_balanced buffer balances class labels"),
                                ("derpp", {"buffer": "class_balanced"}, "derpp: a class_balanced buffer")]:
        with pytest.raises(TransferkitError, match=message):
            train_stream(model, create_continual_strategy(name, **args), stream, SETTINGS, progress=False)
    with pytest.raises(TransferkitError, match="The model predicts 'classification' targets but stream"):
        train_stream(model_for("classification", 2), create_continual_strategy("naive"), stream, SETTINGS,
                     progress=False)


@pytest.mark.parametrize("name", ["er", "derpp", "agem", "si", "naive", "joint", "lwf+er"])
def test_replay_and_regularisers_learn_a_regression_stream_with_the_task_loss(name):
    args = {"derpp": {"fill": "task_end", "size": 100}, "lwf+er": {"lwf": {"weight": 0.1}}}.get(name, {})
    stream = permuted(regression_data(), regression_data(seed=1), tasks=2, task="regression")
    strategy = create_continual_strategy(name, **args)
    res = train_stream(model_for("regression", 1), strategy, stream,
                       SETTINGS.model_copy(update={"lr": 0.02, "epochs": 15}), progress=False)
    R = res.matrices["domain_il"]
    assert len(R) == 2 and R[0][0] > 0.5 and R[1][1] > 0.5, R  # each task learned (R² of 2x + 0.5)
    assert "fwt" not in res.summary()["domain_il"]  # R² has no floor: no FWT
    if name == "derpp":  # filled at task ends with an equal share per task (values have no class)
        assert len(strategy.buffer) == 100
        assert torch.bincount(strategy.buffer.task).tolist() == [50, 50]
    if name in ("er", "derpp", "agem"):  # the stored values come back as values for the task loss
        assert strategy.buffer.y.is_floating_point()


def test_er_filled_at_task_ends_keeps_one_task_index_per_stored_example():
    stream = permuted(multilabel_data(), multilabel_data(seed=1), tasks=2, task="multilabel")
    er = create_continual_strategy("er", size=40, fill="task_end")
    model = model_for("multilabel", 3)
    for exp in stream.experiences:
        er.after_task(model, exp)
    assert er.buffer.task.dtype == torch.long and er.buffer.task.shape == (40,)
    assert torch.bincount(er.buffer.task).tolist() == [20, 20] and er.buffer.y.shape == (40, 3)


def test_a_stream_takes_its_task_type_from_its_datasets():
    assert permuted(multilabel_data(), multilabel_data(seed=1), tasks=2).task == "multilabel"
    with pytest.raises(TransferkitError, match="hold multilabel targets, not 'classification'"):
        permuted(multilabel_data(), multilabel_data(seed=1), tasks=2, task="classification")
    with pytest.raises(TransferkitError, match="does not match the first of the sequence"):  # [N] vs [N, 1] values
        one = ArrayDataset(regression_data().x, regression_data().targets.reshape(-1, 1), task="regression")
        sequence([("a", regression_data(), regression_data()), ("b", one, one)])
    with pytest.raises(TransferkitError, match="does not match the first of the sequence"):  # a test set of 2 columns
        sequence([("a", regression_data(), regression_data()), ("b", regression_data(), regression_data(width=2))])


def test_der_replays_stored_values_through_the_regression_loss():
    stream = permuted(regression_data(), regression_data(seed=1), tasks=2, task="regression")
    model = model_for("regression", 1)
    derpp = create_continual_strategy("derpp", weight=0.0, replay_weight=1.0, single_batch=True, batch_size=4)
    x, y = stream.experiences[0].train[list(range(4))]
    derpp.buffer.add(x, torch.as_tensor(y), logits=torch.zeros(4, 1))
    torch.manual_seed(0)
    term = derpp.loss_terms(Batch(x, torch.as_tensor(y)), model(x), model)["replay"]
    torch.manual_seed(0)
    mem = derpp.buffer.sample(4)
    torch.testing.assert_close(term, F.mse_loss(model(mem["x"]).logits, mem["y"].view(-1, 1)))
