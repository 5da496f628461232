"""Multi-task data and runs: masked losses, mixed / alternating batches, MultiMNIST, the run directory."""

import json

import numpy as np
import pytest
import torch

from transferkit.errors import TransferkitError
from transferkit.multitask.data import AlternatingBatches, MixedBatches, MultiTaskArrays, task_losses


class _Sampler:
    seed, epoch = 0, 0


def _domains(sizes=(50, 20, 7)):
    g = torch.Generator().manual_seed(0)
    return MultiTaskArrays.from_tasks({f"t{i}": (torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g))
                                       for i, n in enumerate(sizes)})


def test_tasks_from_different_datasets_are_concatenated_with_their_own_labels_only():
    ds = _domains()
    assert len(ds) == 77 and [len(ds.rows(t)) for t in ds.targets] == [50, 20, 7]
    assert int((ds.targets["t1"] >= 0).sum()) == 20 and ds.only("t2").targets.keys() == {"t2"}
    with pytest.raises(TransferkitError, match="differ in shape"):
        MultiTaskArrays.from_tasks({"a": (np.zeros((3, 4)), [0, 1, 0]), "b": (np.zeros((3, 5)), [0, 1, 1])})


def test_task_losses_use_each_tasks_labelled_rows_and_skip_absent_tasks():
    from transferkit.tasks import Classification, Regression

    logits = {"a": torch.randn(4, 3), "b": torch.randn(4, 1)}
    targets = {"a": torch.tensor([0, -1, 2, -1]), "b": torch.tensor([float("nan")] * 4)}
    losses = task_losses(logits, targets, {"a": Classification(), "b": Regression()})
    assert set(losses) == {"a"}
    torch.testing.assert_close(losses["a"], torch.nn.functional.cross_entropy(logits["a"][[0, 2]], torch.tensor([0, 2])))


def test_task_losses_follow_each_tasks_declared_type_not_the_targets_dtype():
    """Float multi-hot targets declared multilabel get BCE (the dtype alone picked MSE); float values
    declared regression with loss l1 get the mean absolute error over the labelled rows."""
    from transferkit.tasks import Multilabel, Regression

    g = torch.Generator().manual_seed(0)
    logits = {"tags": torch.randn(4, 3, generator=g), "price": torch.randn(4, 1, generator=g)}
    tags = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [float("nan")] * 3, [0.0, 1.0, 0.0]])
    price = torch.tensor([2.0, float("nan"), -1.0, 0.5])
    losses = task_losses(logits, {"tags": tags, "price": price}, {"tags": Multilabel(), "price": Regression(loss="l1")})
    z, y = logits["tags"][[0, 1, 3]], tags[[0, 1, 3]]
    by_hand = -(y * torch.log(torch.sigmoid(z)) + (1 - y) * torch.log(1 - torch.sigmoid(z))).mean()
    torch.testing.assert_close(losses["tags"], by_hand)
    p = logits["price"][[0, 2, 3], 0]
    torch.testing.assert_close(losses["price"], (p - torch.tensor([2.0, -1.0, 0.5])).abs().mean())


def test_mixed_batches_hold_every_task_and_alternating_batches_one_task_in_turn():
    ds = _domains()
    groups = [set(ds.rows(t).tolist()) for t in ds.targets]
    mixed = list(MixedBatches([ds.rows(t) for t in ds.targets], _Sampler(), 16))
    assert len(mixed) == 5 and all(all(set(b.tolist()) & g for g in groups) for b in mixed)
    alt = list(AlternatingBatches([ds.rows(t) for t in ds.targets], _Sampler(), 16))
    owners = [next(i for i, g in enumerate(groups) if set(b.tolist()) <= g) for b in alt]
    assert owners[:3] == [0, 1, 2] and sorted(torch.cat(alt).tolist()) == list(range(len(ds)))
    assert ds.batch_plan(_Sampler(), 16) is not None
    same_inputs = MultiTaskArrays(torch.zeros(8, 2), {"a": torch.zeros(8).long(), "b": torch.ones(8).long()})
    assert same_inputs.batch_plan(_Sampler(), 4) is None  # every row labelled for every task: plain batches


def test_multi_mnist_is_reproducible_and_places_the_digits_top_left_and_bottom_right():
    from transferkit.multitask.datasets import multi_mnist, overlay_digits

    imgs = np.zeros((3, 28, 28), np.uint8)
    imgs[0, :14, :14] = 255  # ink only in the top-left quadrant
    a = multi_mnist(imgs, np.array([1, 2, 3]), 20, seed=5)
    b = multi_mnist(imgs, np.array([1, 2, 3]), 20, seed=5)
    torch.testing.assert_close(a.x, b.x)
    assert a.x.shape == (20, 1, 28, 28) and not torch.equal(a.targets["left"], a.targets["right"])
    left = overlay_digits(imgs[:1] / 255.0, np.zeros((1, 28, 28)))[0, 0]
    right = overlay_digits(np.zeros((1, 28, 28)), imgs[:1] / 255.0)[0, 0]
    assert left[:6, :6].mean() > 0.9 and right[:6, :6].mean() < 0.1 and right[8:14, 8:14].mean() > 0.9


def _config(tmp_path, **kw):
    cfg = {"name": "oc", "data": {"kind": "domains", "per_task": 120, "tasks": [
               "office_caltech10_surf:amazon", "office_caltech10_surf:caltech", "office_caltech10_surf:webcam"]},
           "model": {"backbone": "mlp", "backbone_args": {"in_features": 800, "hidden": [32]}},
           "weighter": {"name": "pcgrad"}, "compare": ["equal"], "seeds": 1, "similarity_every": 2,
           "train": {"epochs": 2, "batch_size": 32, "device": "cpu"}}
    for k, v in kw.items():
        cfg[k] = cfg[k] | v if isinstance(v, dict) else v
    return cfg


def test_a_run_writes_models_baselines_delta_m_and_a_report(tmp_path, shared_data):
    from transferkit.runs.multitask import run_multitask

    out = tmp_path / "run"
    summary = run_multitask(_config(tmp_path), out, progress=False)
    assert {"pcgrad", "equal", "single_task"} == set(summary) and "delta_m" in summary["pcgrad"]
    for part in ("config.yaml", "results.csv", "summary.json", "report.html", "gradient_similarity.png",
                 "multi/pcgrad/seed-0/metrics.jsonl", "single/webcam/seed-0/metrics.jsonl"):
        assert (out / part).is_file(), part
    record = json.loads((out / "multi/equal/seed-0/metrics.jsonl").read_text().splitlines()[-1])
    assert {"train/gradcos/amazon|caltech", "train/weight/webcam", "val/caltech/accuracy"} <= set(record)
    html = (out / "report.html").read_text()
    assert "Δm" in html and "data:image/png" in html
    with pytest.raises(TransferkitError, match="exists"):
        run_multitask(_config(tmp_path), out, progress=False)


def test_bad_multitask_configs_fail_before_training(tmp_path):
    from transferkit.runs.multitask import run_multitask

    with pytest.raises(TransferkitError, match="Did you mean 'pcgrad'"):
        run_multitask(_config(tmp_path, weighter={"name": "pcgad"}), tmp_path / "a")
    with pytest.raises(TransferkitError, match="'alternating'"):
        run_multitask(_config(tmp_path, data={"batches": "alternating"}), tmp_path / "b")
    with pytest.raises(TransferkitError, match="backbone 'mlp'"):
        run_multitask(_config(tmp_path, model={"arch": "cross_stitch", "backbone": "small_cnn", "backbone_args": {}}),
                      tmp_path / "c")
    with pytest.raises(TransferkitError, match="does not accept the tasks' inputs of shape \\(800,\\).*in_features"):
        run_multitask(_config(tmp_path, model={"backbone_args": {"in_features": 700}}), tmp_path / "d")
    assert not any((tmp_path / d).exists() for d in "abcd")


@pytest.mark.parametrize("arch", ["mmoe", "cross_stitch"])
def test_soft_sharing_architectures_and_alternating_batches_run(tmp_path, shared_data, arch):
    from transferkit.runs.multitask import run_multitask

    cfg = _config(tmp_path, model={"arch": arch}, weighter={"name": "uncertainty"}, compare=[], single_task=False,
                  data={"batches": "alternating" if arch == "mmoe" else "mixed"},
                  train={"epochs": 8, "lr": 0.01})
    summary = run_multitask(cfg, tmp_path / arch, progress=False)
    assert summary["uncertainty"]["tasks"]["amazon"]["mean"] > 0.3 and "delta_m" not in summary["uncertainty"]


def test_cagrad_without_rescaling_is_the_rescaled_update_times_one_plus_c_squared():
    from transferkit.multitask import cagrad

    G = torch.randn(3, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    d, _ = cagrad(G, c=0.4)
    d_raw, _ = cagrad(G, c=0.4, rescale=False)
    torch.testing.assert_close(d_raw, d * 1.16)


def _office_dir(root, seed):
    """A data directory holding a tiny 'office_caltech10_surf' file (8-d features, 20 rows a domain)."""
    rng = np.random.default_rng(seed)
    (root / "office_caltech10_surf").mkdir(parents=True)
    arrays = {f"x_{d}": rng.random((20, 8)).astype(np.float32) for d in ("amazon", "caltech", "dslr", "webcam")}
    arrays |= {f"y_{d}": np.arange(20) % 2 for d in ("amazon", "caltech", "dslr", "webcam")}
    np.savez(root / "office_caltech10_surf" / "office_caltech10_surf.npz", class_names=np.array(["a", "b"]), **arrays)
    return root


def _encoder_file(path, seed):
    from safetensors.torch import save_file

    from transferkit.backbones import create_backbone

    torch.manual_seed(seed)
    save_file(create_backbone("mlp", in_features=8, hidden=[16]).state_dict(), str(path))
    return path


def test_the_feature_cache_is_keyed_on_the_data_and_weights_contents(tmp_path):
    """Same spec, same cache folder: another data directory, or a weights file rewritten in place,
    must be encoded anew (the cache key used to hold only their names)."""
    from types import SimpleNamespace

    from transferkit.backbones import create_backbone
    from transferkit.multitask.datasets import load_domain_tasks

    weights = _encoder_file(tmp_path / "enc.safetensors", 0)

    def features(data_root):
        """The encoded training rows of the 'amazon' task."""
        cfg = SimpleNamespace(tasks=["office_caltech10_surf:amazon", "office_caltech10_surf:dslr"], per_task=None, seed=0,
                              test_fraction=0.25, batches="mixed", data_dir=str(data_root), cache_dir=str(tmp_path / "cache"),
                              encoder="mlp", encoder_weights=str(weights), encoder_args={"in_features": 8, "hidden": [16]})
        train, _ = load_domain_tasks(cfg)
        return train.x[train.targets["amazon"] >= 0]

    def encoded(data_root):
        """The same rows' features as the encoder gives them now, as a set of rounded rows."""
        from transferkit.data import load_dataset

        enc = create_backbone("mlp", weights=weights, in_features=8, hidden=[16]).eval()
        with torch.no_grad():
            return {tuple(r) for r in enc(load_dataset("office_caltech10_surf:amazon", data_root).x).numpy().round(4)}

    def rows(x):
        return {tuple(r) for r in x.numpy().round(4)}

    first, second = _office_dir(tmp_path / "d1", 1), _office_dir(tmp_path / "d2", 2)
    assert rows(features(first)) <= encoded(first)
    b = features(second)  # another folder, same spec
    assert len(b) == 16 and rows(b) <= encoded(second)
    _encoder_file(weights, 1)  # the same file name, other weights
    c = features(second)
    assert rows(c) <= encoded(second) and not torch.allclose(b, c)
    assert torch.equal(features(second), c)  # an unchanged input reads the cache
    assert len(list((tmp_path / "cache" / "features").iterdir())) == 6  # 2 tasks x 3 different inputs
