"""runs/meta.py and meta/learners.py: the run directory, every method end to end, config errors, refusing to
overwrite, exact resume after an interruption, the CI formula, the Omniglot loader."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from transferkit.backbones import create_backbone
from transferkit.errors import TransferkitError
from transferkit.meta import Episode, EpisodeSampler
from transferkit.meta.learners import class_batch, fit_head
from transferkit.runs.meta import build_learner, evaluate_episodes, head_outputs, load_meta_data, run_meta
from transferkit.config import MetaConfig, parse_config

METHODS = ["maml", "fomaml", "anil", "reptile", "protonet", "finetune"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions run fastest on one thread (and the cores are shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_images(tmp_path):
    """12 classes of 8 16x16 binary images: a random pattern per class, 10 % of its pixels flipped."""
    rng = np.random.default_rng(0)
    protos = rng.random((12, 16, 16)) > 0.5
    x = np.concatenate([np.where(rng.random((8, 16, 16)) < 0.1, ~p, p) for p in protos]).astype(np.uint8) * 255
    path = tmp_path / "tiny.npz"
    np.savez(path, x=x, y=np.repeat(np.arange(12), 8))
    return path


def config(npz, method="protonet", **train) -> dict:
    return {"data": {"dataset": str(npz), "split": [6, 3, 3], "n_way": 3, "k_shot": 1, "q_queries": 2},
            "model": {"backbone_args": {"width": 8}},
            "method": {"name": method, "meta_batch": 2, "inner_lr": 0.1, "batch_size": 8}
            | ({"inner_steps": 5} if method == "finetune" else {}),
            "train": {"iterations": 4, "eval_every": 2, "val_episodes": 4, "test_episodes": 10, "device": "cpu"}
            | train}


def test_run_directory_holds_config_metrics_checkpoint_results_and_report(tiny_images, tmp_path):
    res = run_meta(config(tiny_images), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert {"config.yaml", "metrics.jsonl", "checkpoints", "model.safetensors", "results.json", "report.html",
            "val_accuracy.png"} <= {p.name for p in run.iterdir()}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [2, 4]
    assert all(0 <= r["val/accuracy"] <= 1 and np.isfinite(r["train/loss"]) for r in records)
    assert (run / "checkpoints" / "LATEST").read_text() == "epoch-0004"
    assert json.loads((run / "results.json").read_text()) == res
    assert res["classes"] == {"train": 6, "val": 3, "test": 3} and res["test"]["episodes"] == 10
    assert "protonet" in (run / "report.html").read_text()


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_end_to_end_and_changes_the_weights(tiny_images, tmp_path, method):
    cfg = parse_config(config(tiny_images, method), schema=MetaConfig)
    ds, splits = load_meta_data(cfg.data)
    sampler = EpisodeSampler(ds, splits["train"], 3, 1, 2, seed=0)
    before = build_learner(cfg, head_outputs(cfg, sampler), (1, 16, 16)).state_dict()
    res = run_meta(cfg, tmp_path / method, progress=False)
    after = load_file(str(tmp_path / method / "model.safetensors"))
    assert set(after) == set(before)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert 0 <= res["test"]["accuracy"] <= 1 and res["method"] == method


def test_meta_sgd_learns_its_inner_rates(tiny_images, tmp_path):
    run_meta(config(tiny_images, "fomaml") | {"method": {"name": "maml", "learn_inner_lr": True, "inner_lr": 0.1}},
             tmp_path / "msgd", progress=False)
    rates = {k: v for k, v in load_file(str(tmp_path / "msgd" / "model.safetensors")).items() if k.startswith("rates.")}
    assert rates and any(not torch.allclose(v, torch.full_like(v, 0.1)) for v in rates.values())


@pytest.mark.parametrize("method", ["protonet", "fomaml", "reptile", "finetune"])
def test_resume_after_an_interruption_ends_with_the_same_weights(tiny_images, tmp_path, method):
    cfg = config(tiny_images, method, iterations=6)
    run_meta(cfg, tmp_path / "whole", progress=False)

    class Killed(Exception):
        pass

    def kill(record):
        if record["iteration"] == 4:
            raise Killed

    with pytest.raises(Killed):
        run_meta(cfg, tmp_path / "cut", progress=False, on_eval=kill)
    assert not (tmp_path / "cut" / "results.json").exists()
    seen = []
    res = run_meta(cfg, tmp_path / "cut", resume=True, progress=False, on_eval=lambda r: seen.append(r["iteration"]))
    assert seen == [6]  # it went on from the checkpoint of iteration 4, not from the start
    whole, cut = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("whole", "cut"))
    assert set(whole) == set(cut) and all(torch.equal(whole[k], cut[k]) for k in whole)
    rows = lambda d: [{k: v for k, v in json.loads(r).items() if k != "seconds"}
                      for r in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
    assert rows("cut") == rows("whole") and [r["iteration"] for r in rows("cut")] == [2, 4, 6]
    untimed = lambda t: {k: v for k, v in t.items() if k != "seconds"}
    assert untimed(res["test"]) == untimed(json.loads((tmp_path / "whole" / "results.json").read_text())["test"])


def test_resume_refuses_a_different_config(tiny_images, tmp_path):
    run_meta(config(tiny_images, iterations=2), tmp_path / "run", progress=False)
    with pytest.raises(TransferkitError, match="'method.name' differs from its config.yaml"):
        run_meta(config(tiny_images, "fomaml", iterations=2), tmp_path / "run", resume=True, progress=False)


def test_finetune_fits_its_new_head_for_100_steps_unless_told():
    method = lambda **m: parse_config({"data": {"dataset": "x.npz"}, "method": m}, schema=MetaConfig).method
    assert (method(name="finetune").inner_steps, method(name="finetune").inner_lr) == (100, 0.1)
    assert method(name="finetune", inner_steps=7).inner_steps == 7 and method(name="maml").inner_steps == 1


def test_an_existing_run_is_never_overwritten_unless_asked(tiny_images, tmp_path):
    run_meta(config(tiny_images, iterations=2), tmp_path / "run", progress=False)
    with pytest.raises(TransferkitError, match="already exists; pass --overwrite"):
        run_meta(config(tiny_images, iterations=2), tmp_path / "run", progress=False)
    run_meta(config(tiny_images, iterations=2, seed=1), tmp_path / "run", overwrite=True, progress=False)
    assert "seed: 1" in (tmp_path / "run" / "config.yaml").read_text()


@pytest.mark.parametrize("change,key", [
    ({"data": {"n_way": 1}}, "data.n_way"),
    ({"method": {"name": "mamll"}}, "method.name"),
    ({"method": {"name": "reptile", "learn_inner_lr": True}}, "method"),
    ({"data": {"split": [0.5, 0.5]}}, "data.split"),
    ({"train": {"iterations": 0}}, "train.iterations"),
    ({"train": {"test_episodes": True}}, "train.test_episodes"),
    ({"data": {"split": "vinyals"}}, "data.split 'vinyals'"),
    ({"data": {"n_way": 5}}, "n_way=5"),
    ({"data": {"train_n_way": 4}, "method": {"name": "maml"}}, "data.train_n_way"),
    ({"data": {"classes": {"train": [0, 1, 2], "val": [2, 3, 4], "test": [5, 6, 7]}}}, "share class 2"),
    ({"data": {"classes": {"train": [0, 1, 2], "val": [3, 4, 40], "test": [5, 6, 7]}}}, "class 40"),
])
def test_bad_configs_name_the_key_before_any_file_is_written(tiny_images, tmp_path, change, key):
    raw = config(tiny_images)
    for section, values in change.items():
        raw[section] = raw[section] | values
    with pytest.raises(TransferkitError, match=key.replace("[", r"\[")):
        run_meta(raw, tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()


def test_given_classes_are_used_as_listed(tiny_images):
    classes = {"train": [0, 1, 2, 3], "val": [4, 5, 6], "test": [9, 10, 11]}
    cfg = parse_config(config(tiny_images) | {"data": config(tiny_images)["data"] | {"classes": classes}},
                       schema=MetaConfig)
    assert load_meta_data(cfg.data)[1] == classes


def _evaluate(accs: list[float]) -> dict:
    class Stub:
        it = iter(accs)

        def eval(self):
            pass

        train = eval

        def accuracy(self, ep):
            return next(self.it)

    class Episodes:
        def episode(self, i):
            return Episode(*(torch.zeros(1),) * 4, ())

    return evaluate_episodes(Stub(), Episodes(), len(accs), "cpu")


def test_confidence_interval_is_1_96_sample_std_over_sqrt_n():
    got = _evaluate([1.0, 0.5, 0.5, 0.0])  # squared deviations 0.25 + 0 + 0 + 0.25 = 0.5, over n - 1 = 3
    assert got["accuracy"] == 0.5 and got["ci95"] == pytest.approx(1.96 * np.sqrt(0.5 / 3) / 2)


def test_confidence_interval_of_one_episode_is_zero():
    assert _evaluate([0.6]) == {"accuracy": 0.6, "ci95": 0.0, "episodes": 1}


def test_fit_head_takes_gradient_steps_from_zero():
    f = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    y = torch.tensor([0, 1])
    w, b = fit_head(f, y, 2, steps=1, lr=1.0)
    # at zero the softmax is uniform: dL/dW = (1/S) (p - onehot)^T f, dL/db = mean(p - onehot)
    g = (torch.full((2, 2), 0.5) - F.one_hot(y, 2)).T @ f / 2
    assert torch.allclose(w, -g) and torch.allclose(b, torch.zeros(2))


def test_fit_head_equals_autograd_gradient_descent_on_the_cross_entropy():
    g = torch.Generator().manual_seed(0)
    f, y = torch.randn(10, 6, generator=g, dtype=torch.float64), torch.arange(5).repeat(2)
    w, b = torch.zeros(5, 6, dtype=torch.float64, requires_grad=True), torch.zeros(5, dtype=torch.float64, requires_grad=True)
    for _ in range(7):
        gw, gb = torch.autograd.grad(F.cross_entropy(f @ w.T + b, y), (w, b))
        w, b = (w - 0.3 * gw).detach().requires_grad_(True), (b - 0.3 * gb).detach().requires_grad_(True)
    fw, fb = fit_head(f, y, 5, steps=7, lr=0.3)
    torch.testing.assert_close(fw, w.detach())
    torch.testing.assert_close(fb, b.detach())


def test_class_batches_are_reproducible_and_cover_rotated_classes(tiny_images):
    cfg = parse_config(config(tiny_images) | {"data": config(tiny_images)["data"] | {"rotations": True}},
                       schema=MetaConfig)
    ds, splits = load_meta_data(cfg.data)
    sampler = EpisodeSampler(ds, splits["train"], 3, 1, 2, rotations=True, seed=4)
    (x, y), (x2, y2) = class_batch(sampler, 7, 32), class_batch(sampler, 7, 32)
    assert torch.equal(x, x2) and torch.equal(y, y2) and x.shape == (32, 1, 16, 16)
    assert int(y.max()) < len(sampler.classes) == 24
    c, r = sampler.classes[int(y[0])]  # the image is one of its class's, rotated r quarter turns
    assert any(torch.equal(torch.rot90(ds.x[i], r, dims=(-2, -1)), x[0]) for i in sampler.index[c])


def test_conv4_has_the_papers_feature_sizes():
    assert create_backbone("conv4").num_features == 64  # 28x28 Omniglot
    assert create_backbone("conv4", in_channels=3, image_size=84).num_features == 1600  # miniImageNet
    with pytest.raises(TransferkitError, match="image_size"):
        create_backbone("conv4", image_size=8)


def test_omniglot_gives_the_vinyals_split(shared_data):
    cfg = parse_config({"data": {"dataset": str(shared_data / "omniglot" / "omniglot.npz"), "split": "vinyals"}},
                       schema=MetaConfig)
    ds, splits = load_meta_data(cfg.data)
    assert {s: len(c) for s, c in splits.items()} == {"train": 1028, "val": 172, "test": 423}
    assert len(ds) == 32460 and tuple(ds.x.shape[1:]) == (1, 28, 28) and float(ds.x.max()) == 1.0
    assert min(splits["test"]) >= 964  # every test character is from the evaluation alphabets


def test_reptile_needs_two_inner_steps_and_defaults_to_five():
    method = lambda **m: parse_config({"data": {"dataset": "x.npz"}, "method": m}, schema=MetaConfig).method
    assert method(name="reptile").inner_steps == 5 and method(name="reptile", inner_steps=2).inner_steps == 2
    with pytest.raises(TransferkitError, match=r"method.inner_steps=1 makes reptile plain joint SGD.*2 or more"):
        method(name="reptile", inner_steps=1)


def test_reptile_outer_step_size_is_meta_step_annealed_linearly_by_iteration():
    from transferkit.runs.meta import _outer_step

    class Learner:
        def reptile_step(self, batch, epsilon):
            return epsilon

    class Episodes:
        def batch(self, start, tasks):
            return Episode(*(torch.zeros(1),) * 4, ())

    cfg = parse_config({"data": {"dataset": "x.npz"}, "method": {"name": "reptile", "meta_step": 0.5,
                        "meta_step_final": 0.1}, "train": {"iterations": 8, "lr": 1e-3}}, schema=MetaConfig)
    got = [_outer_step(Learner(), None, Episodes(), cfg, i, "cpu") for i in (0, 2, 7)]
    assert got == pytest.approx([0.5, 0.5 + (0.1 - 0.5) * 2 / 8, 0.5 + (0.1 - 0.5) * 7 / 8])  # not train.lr
    defaults = parse_config({"data": {"dataset": "x.npz"}, "method": {"name": "reptile"},
                             "train": {"iterations": 4}}, schema=MetaConfig)
    assert [_outer_step(Learner(), None, Episodes(), defaults, i, "cpu") for i in range(4)] == [1.0, 0.75, 0.5, 0.25]


@pytest.mark.parametrize("method", ["maml", "anil", "reptile"])
def test_dropout_in_the_backbone_runs_one_outer_step(method):
    from transferkit.backbones.small import MLP
    from transferkit.heads import create_head
    from transferkit.meta.learners import MetaLearner
    from transferkit.model import TransferModel

    torch.manual_seed(0)
    model = TransferModel(MLP(in_features=4, hidden=(6,), dropout=0.5), create_head("linear", 6, 3))
    learner = MetaLearner(model, method, 3, inner_steps=2, inner_lr=0.1)
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    batch = Episode(torch.randn(2, 3, 4, generator=g), torch.arange(3).expand(2, 3),
                    torch.randn(2, 6, 4, generator=g), torch.arange(3).repeat(2).expand(2, 6), ())
    if method == "reptile":
        loss = learner.reptile_step(batch, 1.0)
    else:
        out = learner.outer_loss(batch)
        out.backward()
        loss = out.item()
        torch.optim.SGD(learner.parameters(), lr=0.1).step()
    assert np.isfinite(loss)
    after = learner.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_one_run_tests_every_way_and_shot_asked_for(tiny_images, tmp_path):
    res = run_meta(config(tiny_images, test_ways=[2], test_shots=[1, 2]), tmp_path / "run", progress=False)
    assert [(t["n_way"], t["k_shot"]) for t in res["tests"]] == [(3, 1), (2, 1), (2, 2), (3, 2)]
    assert res["test"] == res["tests"][0] and all(t["episodes"] == 10 for t in res["tests"])
    report = (tmp_path / "run" / "report.html").read_text()
    assert "2-way 2-shot" in report and "3-way 2-shot" in report


def test_a_head_of_n_way_outputs_refuses_other_test_ways(tiny_images):
    with pytest.raises(TransferkitError, match="fomaml learns a head of data.n_way=3 outputs; .* remove 2 from"):
        parse_config(config(tiny_images, "fomaml", test_ways=[2]), schema=MetaConfig)


def _png_folders(root, x, groups: dict[str, list[int]]):
    from PIL import Image

    for name, rows in groups.items():
        (root / name).mkdir(parents=True)
        for i in rows:
            Image.fromarray(x[i]).save(root / name / f"{i:03d}.png")
    return root


@pytest.mark.parametrize("method", ["protonet", "fomaml"])
def test_predict_adapts_a_trained_run_to_a_support_folder(tiny_images, tmp_path, method):
    from transferkit.api import predict
    from transferkit.runs.meta import load_meta_run

    run_meta(config(tiny_images, method), tmp_path / "run", progress=False)
    d = np.load(tiny_images)
    x, y = d["x"], d["y"]
    support = _png_folders(tmp_path / "support", x, {f"char{c}": [int(np.flatnonzero(y == c)[0])] for c in (9, 10, 11)})
    queries = _png_folders(tmp_path / "queries", x, {"q": [int(i) for c in (9, 10, 11) for i in np.flatnonzero(y == c)[1:3]]})
    rows = predict(tmp_path / "run", queries / "q", support=support)
    assert len(rows) == 6 and {r["class"] for r in rows} <= {"char9", "char10", "char11"}
    assert all(0 < r["confidence"] <= 1 and r["class"] == sorted(["char10", "char11", "char9"])[r["prediction"]]
               for r in rows)
    _, learner, _ = load_meta_run(tmp_path / "run")  # the same as adapting from Python on the arrays
    sx = torch.as_tensor(x[[int(np.flatnonzero(y == c)[0]) for c in (10, 11, 9)]], dtype=torch.float32)[:, None] / 255
    qx = torch.as_tensor(x[[int(i) for c in (9, 10, 11) for i in np.flatnonzero(y == c)[1:3]]],
                         dtype=torch.float32)[:, None] / 255
    expected = learner.logits(sx, torch.arange(3), qx).argmax(1)  # folders sort as char10, char11, char9
    assert [r["prediction"] for r in rows] == expected.tolist()


def test_predict_says_what_a_meta_run_needs(tiny_images, tmp_path):
    from transferkit.api import predict

    run_meta(config(tiny_images), tmp_path / "run", progress=False)
    x = np.load(tiny_images)["x"]
    _png_folders(tmp_path / "one", x, {"only": [0, 1]})
    with pytest.raises(TransferkitError, match="is a meta-learning run.*pass --support"):
        predict(tmp_path / "run", tmp_path / "one")
    with pytest.raises(TransferkitError, match="holds 1 class; give at least two"):
        predict(tmp_path / "run", tmp_path / "one", support=tmp_path / "one")
    (tmp_path / "one" / "empty").mkdir()
    with pytest.raises(TransferkitError, match="'.*empty' holds no images; add images or remove it"):
        predict(tmp_path / "run", tmp_path / "one", support=tmp_path / "one")
    with pytest.raises(TransferkitError, match="--support applies to meta-learning runs"):
        predict(tmp_path, tmp_path / "one", support=tmp_path / "one")


def test_a_meta_run_is_a_transfer_source(tiny_images, tmp_path):
    """The meta-learned backbone loads as `model.weights` of an ordinary run (keys `model.backbone.*`)."""
    from transferkit import train

    run_meta(config(tiny_images), tmp_path / "meta", progress=False)
    weights = tmp_path / "meta" / "model.safetensors"
    args = {"in_channels": 1, "width": 8, "image_size": 16}
    meta = load_file(str(weights))
    backbone = create_backbone("conv4", weights=weights, **args)
    assert all(torch.equal(v, meta[f"model.backbone.{k}"]) for k, v in backbone.state_dict().items())
    res = train({"data": {"dataset": str(tiny_images), "val_fraction": 0.0, "channels": 1},
                 "model": {"backbone": "conv4", "backbone_args": args, "weights": str(weights)},
                 "strategy": {"name": "feature_extraction"},
                 "train": {"epochs": 1, "device": "cpu", "batch_size": 16}}, out=tmp_path / "target", progress=False)
    after = load_file(str(tmp_path / "target" / "model.safetensors"))
    assert all(torch.equal(after[f"backbone.{k}"], meta[f"model.backbone.{k}"]) for k in backbone.state_dict()
               if "running" not in k and "num_batches" not in k)  # frozen features: the meta weights as they were
    assert 0 <= res.metrics["test/accuracy"] <= 1


def test_adapting_checks_the_support_labels(tiny_images, tmp_path):
    from transferkit.runs.meta import load_meta_run

    run_meta(config(tiny_images, "fomaml"), tmp_path / "run", progress=False)
    _, learner, _ = load_meta_run(tmp_path / "run")
    x = torch.rand(8, 1, 16, 16)
    assert learner.logits(x[:2], torch.tensor([0, 1]), x[2:]).shape == (6, 2)  # fewer classes than the head: its first columns
    with pytest.raises(TransferkitError, match="has no example of class 1; label the support classes 0..N-1"):
        learner.logits(x[:2], torch.tensor([0, 2]), x[2:])
    with pytest.raises(TransferkitError, match="has 4 classes, and this fomaml model learned a head of 3"):
        learner.logits(x[:4], torch.arange(4), x[4:])


def test_the_meta_examples_are_valid_configs():
    from pathlib import Path

    from transferkit.config import load_config

    examples = sorted((Path(__file__).resolve().parents[2] / "examples/meta").glob("*.yaml"))
    assert len(examples) >= 2
    for path in examples:
        cfg = load_config(path, schema=MetaConfig)
        assert cfg.data.split == "vinyals" and cfg.train.test_episodes == 600, path


def test_a_meta_run_is_a_rank_candidate(tmp_path):
    """`conv4=RUN/model.safetensors` ranks a meta-learned backbone (default conv4: 1 channel, 28x28)."""
    from transferkit import rank

    rng = np.random.default_rng(1)
    protos = rng.random((12, 28, 28)) > 0.5
    x = np.concatenate([np.where(rng.random((8, 28, 28)) < 0.1, ~p, p) for p in protos]).astype(np.uint8) * 255
    np.savez(tmp_path / "tiny28.npz", x=x, y=np.repeat(np.arange(12), 8))
    cfg = config(tmp_path / "tiny28.npz", iterations=2) | {"model": {}}
    run_meta(cfg, tmp_path / "meta", progress=False)
    res = rank(str(tmp_path / "tiny28.npz"), [f"conv4={tmp_path / 'meta' / 'model.safetensors'}"],
               test_fraction=0.0, cache_dir=tmp_path / "cache", device="cpu", progress=False)
    rows = [r for r in res.rows if r["kind"] != "reference"]  # beside the random-init reference row
    assert len(rows) == 1 and rows[0]["backbone"] == "conv4" and np.isfinite(rows[0]["logme"])


@pytest.mark.parametrize("vectorize", [True, False])
@pytest.mark.parametrize("meta_sgd", [False, True])
def test_anil_computes_features_once_with_the_meta_gradient_of_the_full_inner_loop(vectorize, meta_sgd):
    """ANIL's head-only inner loop on features computed once equals MAML's loop limited to the head's
    parameters with the whole network run at every step (the reference: a Python loop, float64)."""
    from transferkit.heads import create_head
    from transferkit.meta.functional import adapt, logits_of, maml_loss
    from transferkit.meta.learners import MetaLearner
    from transferkit.model import TransferModel

    torch.manual_seed(0)
    backbone = create_backbone("conv4", in_channels=1, width=4, image_size=16)
    model = TransferModel(backbone, create_head("linear", backbone.num_features, 3)).double()
    learner = MetaLearner(model, "anil", 3, inner_steps=2, inner_lr=0.3, learn_inner_lr=meta_sgd,
                          vectorize=vectorize).double()
    g = torch.Generator().manual_seed(1)
    sx, qx = torch.rand(2, 3, 1, 16, 16, generator=g, dtype=torch.float64), torch.rand(2, 6, 1, 16, 16, generator=g,
                                                                                        dtype=torch.float64)
    sy, qy = torch.arange(3).expand(2, 3), torch.arange(3).repeat(2).expand(2, 6)
    params = dict(model.named_parameters())
    wrt = list(learner.parameters())
    new = learner.outer_loss(Episode(sx, sy, qx, qy, None))
    old = maml_loss(model, params, sx, sy, qx, qy, 2, learner._lr(), trainable=learner.trainable, vectorize=False)
    torch.testing.assert_close(new, old, atol=1e-10, rtol=1e-8)
    for a, b in zip(torch.autograd.grad(new, wrt, allow_unused=True), torch.autograd.grad(old, wrt, allow_unused=True)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)
    learner.eval()
    with torch.no_grad():
        lr = {n: v.detach() for n, v in learner._lr().items()} if meta_sgd else 0.3
        fast = adapt(model, {n: p.detach() for n, p in params.items()}, sx[0], sy[0], 2, lr, True, learner.trainable)
        torch.testing.assert_close(learner.logits(sx[0], sy[0], qx[0]),
                                   logits_of(torch.func.functional_call(model, fast, (qx[0],))), atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("method", ["fomaml", "anil", "reptile"])
def test_the_zeroing_trick_starts_every_task_from_a_zero_head(tiny_images, tmp_path, method):
    from transferkit.meta.functional import task_loss

    cfg = parse_config(config(tiny_images, method) | {"method": config(tiny_images, method)["method"]
                                                      | {"zero_head": True}}, schema=MetaConfig)
    ds, splits = load_meta_data(cfg.data)
    sampler = EpisodeSampler(ds, splits["train"], 3, 1, 2, seed=0)
    learner = build_learner(cfg, head_outputs(cfg, sampler), (1, 16, 16))
    ep = sampler.episode(0)
    with torch.no_grad():
        start = learner._params()
    assert all(not p.any() for n, p in start.items() if n.startswith("heads."))
    assert abs(task_loss(learner.model, start, ep.query_x, ep.query_y).item() - np.log(3.0)) < 1e-6
    before = learner.state_dict()
    run_meta(cfg, tmp_path / "run", progress=False)
    after = load_file(str(tmp_path / "run" / "model.safetensors"))
    heads = [k for k in before if ".heads." in k]
    assert heads and all(torch.equal(before[k], after[k]) for k in heads)  # the stored head is never used nor moved
    assert any(not torch.equal(before[k], after[k]) for k in before if k not in heads)
