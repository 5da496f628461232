"""Task types: each loss and metric against hand values and scikit-learn on tiny tensors; the target
checks (one sentence naming the data and the fix); the config keys; the loop and evaluation using them."""

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, f1_score, mean_absolute_error, r2_score

from transferkit.errors import TransferkitError
from transferkit.tasks import Classification, Multilabel, Regression, create_task, labelled, metric_mode

LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.3, 0.2], [-0.5, 1.5, 0.0], [0.0, 0.0, 3.0]])


def test_classification_loss_and_metrics_by_hand_and_against_sklearn():
    y = torch.tensor([0, 2, 1, 1])  # predictions 0, 1, 1, 2: rows 0 and 2 right
    task = Classification()
    by_hand = -(torch.log_softmax(LOGITS, -1)[torch.arange(4), y]).mean()
    torch.testing.assert_close(task.loss(LOGITS, y), by_hand)
    m = task.metrics(LOGITS, y)
    # F1 per class: class 0 (tp 1, fp 0, fn 0) = 1; class 1 (tp 1, fp 1, fn 1) = 0.5; class 2 (tp 0) = 0
    assert m["accuracy"] == 0.5 and m["macro_f1"] == pytest.approx(0.5) and m["loss"] == pytest.approx(float(by_hand))
    assert m["macro_f1"] == pytest.approx(f1_score(y.numpy(), LOGITS.argmax(-1).numpy(), average="macro"))
    g = torch.Generator().manual_seed(0)
    y, pred = torch.randint(0, 5, (40,), generator=g), torch.randint(0, 6, (40,), generator=g)  # a class only predicted
    z = F.one_hot(pred, 6).float()
    assert task.metrics(z, y)["macro_f1"] == pytest.approx(f1_score(y.numpy(), pred.numpy(), average="macro"))
    assert task.predict(LOGITS).tolist() == [0, 1, 1, 2]


def test_multilabel_loss_and_metrics_by_hand_and_against_sklearn():
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    task = Multilabel()
    p = torch.sigmoid(LOGITS)
    by_hand = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    torch.testing.assert_close(task.loss(LOGITS, y), by_hand)
    # label 0: scores 2.0 (+), 0.1, 0.0, -0.5 (+) -> precision 1 at recall 1/2, 2/4 at recall 1 -> AP 0.75
    m = task.metrics(LOGITS, y)
    assert m["mAP"] == pytest.approx(average_precision_score(y.numpy(), LOGITS.numpy(), average="macro"))
    assert task.predict(LOGITS).tolist() == [[1, 1, 0], [1, 1, 1], [0, 1, 0], [0, 0, 1]]  # z > 0
    # tp = 1 + 2 + 1 + 1 = 5, predicted 2 + 3 + 1 + 1 = 7, true 1 + 2 + 2 + 1 = 6 -> micro-F1 = 10 / 13
    assert m["micro_f1"] == pytest.approx(10 / 13)
    assert m["micro_f1"] == pytest.approx(f1_score(y.numpy(), task.predict(LOGITS).numpy(), average="micro"))
    from transferkit.metrics.tasks import average_precision

    assert float(average_precision(LOGITS, y)[0]) == pytest.approx(0.75)


def test_average_precision_handles_ties_and_labels_without_positives_as_sklearn():
    g = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 4, (30, 5), generator=g).float()  # many ties
    y = (torch.rand(30, 5, generator=g) < 0.3).float()
    y[:, 4] = 0  # a label with no positive example: AP 0, as scikit-learn
    from transferkit.metrics.tasks import average_precision, mean_average_precision

    with pytest.warns(UserWarning):
        ref = average_precision_score(y.numpy(), scores.numpy(), average=None)
    np.testing.assert_allclose(average_precision(scores, y).numpy(), ref)
    with pytest.warns(UserWarning):
        assert mean_average_precision(scores, y) == pytest.approx(average_precision_score(y.numpy(), scores.numpy()))


@pytest.mark.parametrize("loss", ["mse", "l1"])
def test_regression_loss_and_metrics_by_hand_and_against_sklearn(loss):
    z = torch.tensor([[1.0], [2.5], [4.0], [5.0]])
    y = torch.tensor([1.0, 2.0, 5.0, 4.0])  # errors 0, 0.5, -1, 1
    task = Regression(loss=loss)
    expected = (0 + 0.25 + 1 + 1) / 4 if loss == "mse" else (0 + 0.5 + 1 + 1) / 4
    assert float(task.loss(z, y)) == pytest.approx(expected)
    m = task.metrics(z, y)
    # R^2 = 1 - 2.25 / sum((y - 3)^2 = 4 + 1 + 4 + 1) = 0.775
    assert m["mae"] == pytest.approx(0.625) and m["mse"] == pytest.approx(0.5625) and m["r2"] == pytest.approx(0.775)
    assert m["loss"] == pytest.approx(expected)
    assert m["mae"] == pytest.approx(mean_absolute_error(y, z[:, 0])) and m["r2"] == pytest.approx(r2_score(y, z[:, 0]))
    zz, yy = torch.tensor([[1.0, 0.0], [2.0, 1.0], [3.0, 1.0]]), torch.tensor([[1.5, 1.0], [2.0, 1.0], [2.0, 1.0]])
    assert task.metrics(zz, yy)["r2"] == pytest.approx(r2_score(yy.numpy(), zz.numpy()))  # constant column scores 0
    assert task.predict(z).tolist() == [1.0, 2.5, 4.0, 5.0]


def test_each_type_names_its_default_monitor_and_mode():
    assert [(t.monitor, t.mode) for t in (Classification(), Multilabel(), Regression())] == [
        ("val/accuracy", "max"), ("val/mAP", "max"), ("val/mae", "min")]
    assert [metric_mode(k) for k in ("val/loss", "val/mae", "val/left/mse", "val/r2", "val/accuracy")] == [
        "min", "min", "min", "max", "max"]
    with pytest.raises(TransferkitError, match="Did you mean 'regression'"):
        create_task("regresion")
    with pytest.raises(TransferkitError, match="'loss' must be 'mse' or 'l1'"):
        create_task("regression", loss="huber")
    assert labelled(torch.tensor([0, -1, 2])).tolist() == [True, False, True]
    assert labelled(torch.tensor([[0.0, 1.0], [float("nan")] * 2])).tolist() == [True, False]


@pytest.mark.parametrize("task,targets,n,message", [
    ("classification", np.array([0.0, 1.5, 2.0]), None, "holds float targets such as 1.5.*set model.task to 'regression'"),
    ("classification", np.array([0.0, np.nan, 1.0]), None, "NaN or infinite targets in 1 row \\(first: row 1\\)"),
    ("classification", np.array([0, 3, 1]), 3, "has label 3 but the head has 3 classes"),
    ("classification", np.zeros((3, 2), np.int64), None, "shape \\(3, 2\\).*'multilabel'"),
    ("regression", np.array([1, 2, 5]), None, "holds int64 targets \\(class indices\\?\\).*needs float values"),
    ("regression", np.array([1.0, np.nan, np.nan]), None, "NaN or infinite targets in 2 rows \\(first: row 1\\)"),
    ("regression", np.zeros((3, 2), np.float32), 1, "has 2 target column\\(s\\), but the model predicts 1"),
    ("multilabel", np.array([[0, 1, 0], [1, 1, 0]], np.float32), 4, "rows of width 3, but the model has 4 classes"),
    ("multilabel", np.array([[0, 1, 0], [2, 1, 0]], np.float32), None, "values other than 0 and 1 \\(2 in row 1\\)"),
    ("multilabel", np.array([0.0, 1.0]), None, "needs one multi-hot row"),
])
def test_bad_targets_get_one_sentence_naming_the_data_and_the_fix(task, targets, n, message):
    with pytest.raises(TransferkitError, match=message) as err:
        create_task(task).check_targets(targets, n, "'data/x.npz' (array 'y')")
    text = str(err.value)
    assert text.startswith("'data/x.npz' (array 'y') ") and text.count("; ") >= 1 and text.endswith(".")
    create_task(task).check_targets({"classification": np.array([0, 1, 2]), "regression": np.array([0.5, 1.0]),
                                     "multilabel": np.eye(3, dtype=np.float32)}[task], None, "ok")  # good targets pass


def test_config_declares_the_task_and_the_monitor_follows_it():
    from transferkit.config import parse_config

    cfg = parse_config({"data": {"dataset": "x.npz"}, "model": {"task": "regression", "task_args": {"loss": "l1"}}})
    assert (cfg.train.monitor, cfg.train.mode) == ("val/mae", "min")
    assert parse_config({"data": {"dataset": "x"}, "model": {"task": "multilabel"}}).train.monitor == "val/mAP"
    own = parse_config({"data": {"dataset": "x"}, "model": {"task": "regression"}, "train": {"monitor": "val/r2"}})
    assert (own.train.monitor, own.train.mode) == ("val/r2", "max")
    with pytest.raises(TransferkitError, match="config key 'model.task': Unknown task 'multilable'. Did you mean 'multilabel'"):
        parse_config({"data": {"dataset": "x"}, "model": {"task": "multilable"}})
    with pytest.raises(TransferkitError, match="config key 'model.task_args': Task 'regression' has no argument 'los'"):
        parse_config({"data": {"dataset": "x"}, "model": {"task": "regression", "task_args": {"los": "l1"}}})


def test_splits_of_values_are_random_and_take_a_label_fraction_not_shots():
    from transferkit.data.splits import make_splits

    y = np.linspace(1, 5, 50).astype(np.float32)  # every value distinct: no classes to stratify by
    sp = make_splits(y, seed=0, val_fraction=0.1, test_fraction=0.2, fraction=0.25)
    assert (len(sp.train), len(sp.val), len(sp.test)) == (9, 4, 10)  # a quarter of the 36 rows left
    assert not set(sp.train) & set(sp.test) and not set(sp.val) & set(sp.test)
    multi_hot = np.eye(5, dtype=np.float32)[np.arange(50) % 5]
    assert len(make_splits(multi_hot, seed=0, test_fraction=0.2, fraction=0.15).train) == 6  # of 40
    for targets in (y, multi_hot):  # shots count examples per class, which these targets do not have
        with pytest.raises(TransferkitError, match="use data.label_fraction"):
            make_splits(targets, shots=7)


def _npz(tmp_path, y, n=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y(x))
    return path


def _cfg(path, task, **train):
    return {"data": {"dataset": str(path), "val_fraction": 0.2, "test_fraction": 0.2},
            "model": {"backbone": "mlp", "backbone_args": {"in_features": 8, "hidden": [16]}, "task": task},
            "train": {"epochs": 8, "batch_size": 16, "lr": 0.02, "device": "cpu"} | train}


def test_a_regression_run_trains_on_its_loss_and_reports_mae(tmp_path):
    from transferkit import api

    path = _npz(tmp_path, lambda x: (2 * x[:, 0] - x[:, 1]).astype(np.float32))
    res = api.train(_cfg(path, "regression"), out=tmp_path / "r", progress=False)
    first, last = res.history[0], res.history[-1]
    assert last["train/task"] < 0.5 * first["train/task"] and last["val/mae"] < first["val/mae"]
    assert {"val/loss", "val/mae", "val/mse", "val/r2"} <= set(last) and "val/accuracy" not in last
    assert res.metrics["test/r2"] > 0.5 and res.model.heads["main"][-1].out_features == 1
    run = api.load_run(tmp_path / "r")
    x = np.load(path)["x"][:3]
    torch.testing.assert_close(torch.as_tensor(run.predict(x)), res.model.eval()(torch.as_tensor(x)).logits)
    rows = api.predict(tmp_path / "r", path)
    assert set(rows[0]) == {"input", "prediction"} and float(rows[0]["prediction"]) == pytest.approx(
        float(run.predict(x)[0, 0]), abs=1e-4)
    assert api.evaluate_run(tmp_path / "r")["mae"] == pytest.approx(res.metrics["test/mae"])


def test_a_multilabel_run_trains_with_bce_and_predicts_label_sets(tmp_path):
    from transferkit import api

    path = _npz(tmp_path, lambda x: (x[:, :3] > 0).astype(np.float32), n=120)
    res = api.train(_cfg(path, "multilabel", epochs=15), out=tmp_path / "m", progress=False)
    assert res.history[-1]["val/mAP"] > res.history[0]["val/mAP"] and res.metrics["test/mAP"] > 0.8
    assert res.model.heads["main"][-1].out_features == 3
    rows = api.predict(tmp_path / "m", path)
    z = res.model.eval()(torch.as_tensor(np.load(path)["x"][:1])).logits[0]
    assert rows[0]["prediction"] == ";".join(str(i) for i in range(3) if z[i] > 0)


def test_cached_features_keep_whole_number_ratings_as_regression_values():
    """Star ratings 1.0 / 5.0 are values, not classes: feature extraction keeps them float32 (an
    ArrayDataset built without the task turned whole-number floats into int64 class labels)."""
    from transferkit.backbones import create_backbone
    from transferkit.data.datasets import ArrayDataset, Subset, TextDataset
    from transferkit.finetune.feature_extraction import extract_features
    from transferkit.heads import create_head
    from transferkit.model import TransferModel

    y = np.array([1.0, 5.0, 4.0, 2.0], np.float32)
    ds = Subset(ArrayDataset(np.zeros((4, 3), np.float32), y, task="regression"), np.array([3, 0, 1]))
    model = TransferModel(create_backbone("mlp", in_features=3, hidden=(2,)), create_head("linear", 2, 1))
    feats = extract_features(model, ds)
    assert feats.targets.dtype == np.float32 and feats.targets.tolist() == [2.0, 1.0, 5.0] and feats.task == "regression"
    text = TextDataset(["good", "bad"], np.array([5.0, 1.0], np.float32), task="regression")
    assert text[0][1].dtype == torch.float32 and float(text[0][1]) == 5.0
    assert ArrayDataset(np.zeros((2, 3)), np.array([1.0, 2.0])).targets.dtype == np.int64  # classes stay classes


def test_named_datasets_give_the_targets_of_the_task(shared_data):
    from transferkit.data import load_dataset

    books = load_dataset("amazon_reviews:books", task="regression")
    assert books.targets.dtype == np.float32 and sorted(np.unique(books.targets)) == [1.0, 2.0, 4.0, 5.0]
    sentiment = load_dataset("amazon_reviews:books")
    assert ((books.targets > 3) == (sentiment.targets == 1)).all()  # 4-5 stars positive, 1-2 negative
    test = load_dataset("multimnist:test", task="multilabel")
    assert test.x.shape == (5000, 1, 28, 28) and test.targets.shape == (5000, 10)
    assert set(test.targets.sum(1).tolist()) <= {1.0, 2.0} and test.targets.sum(1).mean() > 1.8  # two digits, rarely equal
    from transferkit.multitask.datasets import multi_mnist

    d = np.load(shared_data / "mnist" / "mnist.npz")
    same = multi_mnist(d["x_test"], d["y_test"], 5000, seed=1)  # the multi-task benchmark's test images
    torch.testing.assert_close(test.x, same.x)
    assert (test.targets[np.arange(5000), same.targets["left"].numpy()] == 1).all()
    with pytest.raises(TransferkitError, match="has targets for model.task 'multilabel', not 'classification'"):
        load_dataset("multimnist:test")
    with pytest.raises(TransferkitError, match="'classification' or 'regression', not 'multilabel'"):
        load_dataset("amazon_reviews:books", task="multilabel")


def test_a_float_target_file_for_a_classifier_is_refused_naming_the_file(tmp_path):
    from transferkit import api

    path = _npz(tmp_path, lambda x: x[:, 0] * 2.5)
    with pytest.raises(TransferkitError, match=f"'{re.escape(str(path))}': y\\[0\\] = \\S+ is not a class index "
                                               "0..C-1; .*or set model.task: regression"):
        api.train(_cfg(path, "classification"), out=tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_multitask_evaluation_comes_from_the_models_tasks_without_a_weighter():
    """Per-task metrics over each task's labelled rows: the model's task types say which, not the
    presence of a weighter (a multi-task model without one used to go down the single-task path)."""
    from transferkit.backbones import create_backbone
    from transferkit.engine.evaluate import evaluate
    from transferkit.multitask.data import MultiTaskArrays
    from transferkit.multitask.models import HardSharing

    torch.manual_seed(0)
    model = HardSharing(create_backbone("mlp", in_features=4, hidden=(8,)), {"c": 3, "v": 1, "m": 2},
                        tasks={"v": "regression", "m": "multilabel"})
    x = torch.randn(6, 4)
    c = torch.tensor([0, 2, -1, 1, 1, -1])
    v = torch.tensor([0.5, float("nan"), 1.0, -1.0, 2.0, 0.0])
    m = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [float("nan")] * 2, [0.0, 1.0], [1.0, 0.0]])
    out = evaluate(model, MultiTaskArrays(x, {"c": c, "v": v, "m": m}), batch_size=4, prefix="val/")
    with torch.no_grad():
        z = model.eval()(x).logits
    keep = c >= 0
    assert out["val/c/accuracy"] == pytest.approx(float((z["c"][keep].argmax(1) == c[keep]).float().mean()))
    assert out["val/accuracy"] == out["val/c/accuracy"]  # the mean over the classification tasks
    kv = ~torch.isnan(v)
    assert out["val/v/mse"] == pytest.approx(float(((z["v"][kv, 0] - v[kv]) ** 2).mean()), rel=1e-5)
    km = ~torch.isnan(m).any(1)
    assert out["val/m/mAP"] == pytest.approx(average_precision_score(m[km].numpy(), z["m"][km].numpy()))
    assert out["val/loss"] == pytest.approx(out["val/c/loss"] + out["val/v/loss"] + out["val/m/loss"])


def test_joint_trains_a_regression_source_head_with_the_regression_loss(tmp_path):
    from transferkit.backbones import create_backbone
    from transferkit.finetune.base import Batch
    from transferkit.finetune.joint import Joint, draw_batch
    from transferkit.heads import create_head
    from transferkit.model import TransferModel

    source = _npz(tmp_path, lambda x: (3 * x[:, 0]).astype(np.float32), n=20)
    torch.manual_seed(0)
    model = TransferModel(create_backbone("mlp", in_features=8, hidden=(4,)), create_head("linear", 4, 1),
                          task_type=Regression())
    joint = Joint(source=str(source), weight=0.25, batch_size=5)
    joint.prepare_model(model)
    assert model.heads["source"][-1].out_features == 1 and joint._data.targets.dtype == np.float32
    x = torch.randn(3, 8)
    term = joint.loss_terms(Batch(x, torch.zeros(3)), model(x), model)["source"]
    xs, ys = draw_batch(joint._data, 5, 0, 0, torch.device("cpu"))
    torch.testing.assert_close(term, 0.25 * ((model(xs, task="source").logits[:, 0] - ys) ** 2).mean())
    from transferkit.config import ContinualConfig, parse_config

    with pytest.raises(TransferkitError, match="config key 'model': stream.kind 'split_classes' groups class labels"):
        parse_config({"model": {"task": "regression"}}, schema=ContinualConfig)
    permuted = {"stream": {"kind": "permuted", "dataset": "x.npz"}, "model": {"task": "regression"}}
    assert parse_config(permuted, schema=ContinualConfig).model.task == "regression"


def test_a_multitask_config_declares_each_tasks_type():
    from transferkit.config import MultitaskConfig, parse_config
    from transferkit.multitask.data import MultiTaskArrays
    from transferkit.runs.multitask import outputs, task_types

    cfg = parse_config({"model": {"tasks": {"v": {"task": "regression", "task_args": {"loss": "l1"}}}}},
                       schema=MultitaskConfig)
    types = task_types(cfg, ["c", "v"])
    assert (types["c"].name, types["v"].name, types["v"].loss_name) == ("classification", "regression", "l1")
    data = MultiTaskArrays(torch.zeros(4, 2), {"c": torch.tensor([0, 2, -1, 1]), "v": torch.tensor([0.5, 1.0, 2.0, 3.5])})
    assert outputs(data, types) == {"c": 3, "v": 1}
    with pytest.raises(TransferkitError, match="Task 'v' of the multi-task data holds float targets such as 0.5"):
        outputs(data, task_types(parse_config({}, schema=MultitaskConfig), ["c", "v"]))
    with pytest.raises(TransferkitError, match="config key 'model.tasks.v.task': Unknown task 'regresion'"):
        parse_config({"model": {"tasks": {"v": {"task": "regresion"}}}}, schema=MultitaskConfig)


def test_kd_distils_a_regressor_with_mse_and_a_multilabel_teacher_per_label():
    from transferkit.finetune.functional import binary_kd_loss, output_mse

    s, t = torch.tensor([[1.0, -2.0], [0.5, 0.0]]), torch.tensor([[0.0, -1.0], [0.5, 2.0]])
    assert float(output_mse(s, t)) == pytest.approx((1 + 1 + 0 + 4) / 4)
    assert float(binary_kd_loss(t, t, 2.0)) == pytest.approx(0.0, abs=1e-6)
    ps, pt = torch.sigmoid(s / 2), torch.sigmoid(t / 2)
    kl = pt * (pt / ps).log() + (1 - pt) * ((1 - pt) / (1 - ps)).log()
    assert float(binary_kd_loss(s, t, 2.0)) == pytest.approx(4 * float(kl.sum(1).mean()), rel=1e-5)


def test_kd_on_a_regression_teacher_adds_the_mse_to_its_outputs():
    from transferkit.backbones import create_backbone
    from transferkit.finetune.base import Batch
    from transferkit.finetune.kd import KD
    from transferkit.heads import create_head
    from transferkit.model import TransferModel

    def model(seed, task):
        torch.manual_seed(seed)
        bb = create_backbone("mlp", in_features=4, hidden=(8,))
        return TransferModel(bb, create_head("linear", 8, 1), task_type=create_task(task))

    teacher, student = model(0, "regression"), model(1, "regression")
    kd = KD(teacher, weight=0.5, temperature=3.0)
    kd.prepare_model(student)
    x = torch.randn(5, 4)
    out = student(x)
    term = kd.loss_terms(Batch(x, torch.zeros(5)), out, student)["distill"]
    torch.testing.assert_close(term, 0.5 * ((out.logits - teacher(x).logits) ** 2).mean())
    with pytest.raises(TransferkitError, match="teacher is a regression model but the student's model.task is 'classification'"):
        KD(teacher).prepare_model(model(2, "classification"))
