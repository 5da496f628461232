"""Deep domain adaptation: the maths on tiny tensors, the strategies' steps, the run wiring."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from transferkit import train
from transferkit.adapt import MCD, use_unlabelled
from transferkit.adapt import functional as AF
from transferkit.backbones import create_backbone
from transferkit.config import parse_config
from transferkit.data import ArrayDataset
from transferkit.data.datasets import standardize_rows
from transferkit.errors import TransferkitError
from transferkit.finetune import create_strategy
from transferkit.heads import create_head
from transferkit.losses import task_losses
from transferkit.model import Output, TransferModel
from transferkit.strategy import Batch, Step
from tests.conftest import tiny_config
from tests.unit.test_trainer import Interrupt, _stop_after


def test_coral_is_zero_for_equal_covariances_and_matches_the_formula():
    x = torch.randn(20, 3, generator=torch.Generator().manual_seed(1))
    assert AF.coral_loss(x, x + 5.0).item() == pytest.approx(0.0, abs=1e-6)  # a shift keeps the covariance
    y = x * torch.tensor([1.0, 2.0, 1.0])
    cx, cy = np.cov(x.numpy().T), np.cov(y.numpy().T)
    assert AF.coral_loss(x, y).item() == pytest.approx(((cx - cy) ** 2).sum() / (4 * 9), rel=1e-4)


def test_gradient_reversal_flips_and_scales_the_gradient():
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    out = AF.reverse_gradient(x, 0.3)
    assert torch.equal(out, x.detach())
    (out * torch.tensor([2.0, 5.0])).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([-0.6, -1.5]))


def test_dann_schedule_warms_up_from_zero_to_one():
    assert AF.dann_coefficient(0.0) == 0.0
    assert AF.dann_coefficient(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert AF.dann_coefficient(1.0) == pytest.approx(0.99991, abs=1e-5)


def test_entropy_and_mcc_by_hand():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # p = (.5, .5) and (.75, .25)
    h = [math.log(2), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))]
    assert AF.entropy_loss(logits).item() == pytest.approx(sum(h) / 2, rel=1e-5)
    # MCC at temperature 1, written out from the paper's equations
    p = torch.softmax(logits, -1).numpy()
    w = 1 + np.exp(-np.array(h))
    w = 2 * w / w.sum()
    c = p.T @ np.diag(w) @ p
    c = c / c.sum(0, keepdims=True)
    assert AF.mcc_loss(logits, temperature=1.0).item() == pytest.approx((c.sum() - np.trace(c)) / 2, rel=1e-5)
    confident = torch.tensor([[10.0, -10.0], [-10.0, 10.0]])
    assert AF.mcc_loss(confident, temperature=1.0).item() < 1e-6  # no class confused with another


def test_multilinear_map_and_its_randomised_form():
    f, g = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.25, 0.75]])
    assert torch.allclose(AF.multilinear_map(f, g), torch.tensor([[0.25, 0.5, 0.75, 1.5]]))  # g_i * f_j, i-major
    rf, rg = torch.ones(2, 4), torch.full((2, 4), 2.0)
    assert torch.allclose(AF.multilinear_map(f, g, (rf, rg)), torch.full((1, 4), 3.0 * 2.0 / 2.0))


def test_domain_loss_with_equal_weights_is_the_plain_mean():
    torch.manual_seed(0)
    disc = nn.Linear(3, 1)
    s, t = torch.randn(4, 3), torch.randn(6, 3)
    plain = AF.domain_loss(disc, s, t, 1.0)
    weighted = AF.domain_loss(disc, s, t, 1.0, torch.ones(4), torch.ones(6))
    per_domain = (nn.functional.binary_cross_entropy_with_logits(disc(s).squeeze(-1), torch.ones(4))
                  + nn.functional.binary_cross_entropy_with_logits(disc(t).squeeze(-1), torch.zeros(6))) / 2
    assert plain.item() == pytest.approx(nn.functional.binary_cross_entropy_with_logits(
        disc(torch.cat([s, t])).squeeze(-1), torch.cat([torch.ones(4), torch.zeros(6)])).item(), rel=1e-6)
    assert weighted.item() == pytest.approx(per_domain.item(), rel=1e-6)  # each domain counts half (CDAN+E)


def test_task_loss_leaves_out_the_unlabelled_rows():
    logits, y = torch.randn(4, 3), torch.tensor([0, 2, 0, 0])
    mask = torch.tensor([False, False, True, True])
    from transferkit.tasks import create_task

    tasks = {"main": create_task("classification")}
    got = task_losses(Output(logits, None), y, tasks, None, mask)["task"]
    assert got.item() == pytest.approx(nn.functional.cross_entropy(logits[:2], y[:2]).item(), rel=1e-6)


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    return ArrayDataset(rng.random((n, 8, 8), dtype=np.float32), np.arange(n) % 3)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return TransferModel(create_backbone("small_cnn", in_channels=1, width=4, num_features=8), create_head("linear", 8, 3))


def test_target_rows_are_appended_and_drawn_in_a_seeded_order_that_resumes():
    a, b = create_strategy("dann"), create_strategy("dann")
    use_unlabelled(a, images(5, seed=1)), use_unlabelled(b, images(5, seed=1))
    batch = Batch(torch.zeros(3, 1, 8, 8), torch.tensor([0, 1, 2]))
    first = [a.prepare_batch(batch) for _ in range(3)]  # 9 rows: a pass over the 5 targets, then 4 of the next
    assert first[0].unlabelled.tolist() == [False] * 3 + [True] * 3 and len(first[0].targets) == 6
    drawn = torch.cat([f.x[3:] for f in first]).flatten(1)
    assert len({tuple(r.tolist()) for r in drawn[:5]}) == 5  # each target row once per pass
    b.drawn.fill_(6)  # as after loading a checkpoint two batches in
    assert torch.equal(b.prepare_batch(batch).x, first[2].x)


def test_mcd_steps_touch_the_parameters_they_should():
    model, mcd = tiny_model(), MCD(num_k=2)
    use_unlabelled(mcd, images(6, seed=2))
    mcd.prepare_model(model)
    batch = mcd.prepare_batch(Batch(images(4).x, torch.tensor([0, 1, 2, 0])))
    groups = {"backbone": list(model.backbone.parameters()), "head": list(model.heads.parameters()),
              "second": list(mcd.second.parameters())}
    updates = []

    def update():  # record which parts have a gradient at each optimizer step, then clear them
        updates.append({k for k, ps in groups.items() if any(p.grad is not None and p.grad.abs().sum() > 0 for p in ps)})
        for p in [*model.parameters(), *mcd.parameters()]:
            p.grad = None

    out = model(batch.x)
    mcd.backward({}, {}, Step(model, batch, out, 0, torch.Tensor.backward, update))
    left = {k for k, ps in groups.items() if any(p.grad is not None for p in ps)}
    assert updates == [{"backbone", "head", "second"}, {"head", "second"}, {"backbone"}]  # A, B, first C
    assert left == {"backbone"}  # the last C step is the trainer's


def test_a_domain_adaptation_strategy_without_unlabelled_data_is_refused(tiny_npz, tmp_path):
    cfg = tiny_config(tiny_npz) | {"strategy": {"name": "dann+entropy"}}
    with pytest.raises(TransferkitError, match="data.unlabelled"):
        train(cfg, out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_zero_shots_need_source_data(tiny_npz):
    with pytest.raises(TransferkitError, match="data.source"):
        parse_config({"data": {"dataset": str(tiny_npz), "shots": 0}})


def test_standardize_gives_each_example_mean_zero_and_unit_std():
    x = torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    z = standardize_rows(x)
    assert torch.allclose(z[0], torch.tensor([-1.0, 0.0, 1.0]) * math.sqrt(1.5))
    assert torch.equal(z[1], torch.zeros(3))


def shifted_npz(tmp_path):
    """A source and a shifted target of the same 3-class problem."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 30)
    x = rng.normal(size=(90, 8)).astype(np.float32) + 2.0 * np.eye(3, 8)[y]
    np.savez(tmp_path / "src.npz", x=x, y=y)
    np.savez(tmp_path / "tgt.npz", x=x[::-1] * 1.5 + 1.0, y=y[::-1])
    return tmp_path / "src.npz", tmp_path / "tgt.npz"


@pytest.mark.parametrize("strategy", ["dann", "cdan_e+mcc", "mcd", "dan+entropy", "coral"])
def test_a_domain_adaptation_run_resumes_exactly(tmp_path, strategy):
    src, tgt = shifted_npz(tmp_path)
    cfg = tiny_config(tgt) | {"strategy": {"name": strategy}}
    cfg["data"] |= {"source": str(src), "unlabelled": str(tgt), "shots": 0, "val_fraction": 0.0, "test_fraction": "rest"}
    cfg["model"]["num_classes"] = 3
    full = train(cfg, out=tmp_path / "full", progress=False)
    with pytest.raises(Interrupt):
        train(cfg, out=tmp_path / "resumed", progress=False, callbacks=[_stop_after(2)])
    resumed = train(cfg, out=tmp_path / "resumed", resume=True, progress=False)
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert full.metrics["train_examples"] == 90 and full.metrics["test_examples"] == 90


def da_config(tmp_path, strategy="dann", **data):
    src, tgt = shifted_npz(tmp_path)
    cfg = tiny_config(tgt) | {"strategy": {"name": strategy}}
    cfg["data"] |= {"source": str(src), "unlabelled": str(tgt), "shots": 0, "val_fraction": 0.2,
                    "test_fraction": "rest"} | data
    cfg["model"]["num_classes"] = 3
    return cfg


def test_a_da_run_scores_epochs_without_target_labels_and_measures_the_domain_distance(tmp_path):
    cfg = da_config(tmp_path)
    cfg["train"] |= {"monitor": "target/entropy", "epochs": 3}
    res = train(cfg, out=tmp_path / "run", progress=False)
    rows = res.history
    assert all({"target/snd", "target/entropy", "target/im", "val/iwv", "val/dev", "val/accuracy"} <= set(r) for r in rows)
    best = min(rows, key=lambda r: r["target/entropy"])
    sel = res.metrics["selection"]
    assert sel["monitor"] == "target/entropy" and sel["epoch"] == best["epoch"]
    assert sel["target/entropy"] == best["target/entropy"]
    d = res.metrics["domain_distance"]
    assert set(d) == {"mmd_before", "mmd_after", "pad_before", "pad_after"} and d["mmd_before"] > 0
    assert (tmp_path / "run" / "feature_map.png").is_file()
    assert "chosen by target/entropy" in (tmp_path / "run" / "report.html").read_text()
    # the validation rows are source rows: 20 % of the 90 source images, none of the target
    assert res.metrics["train_examples"] == 72 and res.metrics["test_examples"] == 90


def test_compare_adds_source_only_and_flags_against_the_better_baseline(tmp_path):
    from rich.console import Console

    from transferkit.compare import compare

    cfg = da_config(tmp_path, "coral", val_fraction=0.0)
    rows = compare(cfg, ["coral"], shots=[0], seeds=2, out=tmp_path / "cmp", console=Console(quiet=True))
    by = {r["strategy"]: r for r in rows}
    assert set(by) == {"source_only", "coral"}  # no from-scratch run without target labels
    src = [json.loads((tmp_path / "cmp" / f"source_only/trained/seed{s}/summary.json").read_text())["test/accuracy"]
           for s in range(2)]
    assert by["source_only"]["accuracy_mean"] == pytest.approx(100 * np.mean(src))
    assert by["coral"]["baseline"] == "source_only"
    assert by["coral"]["vs_baseline"] == pytest.approx(by["coral"]["accuracy_mean"] - by["source_only"]["accuracy_mean"])


def test_source_only_scores_the_source_model_with_its_own_head(tmp_path):
    from transferkit.api import source_only

    src, tgt = shifted_npz(tmp_path)
    base = tiny_config(src)
    base["train"]["epochs"] = 2
    source = train(base, out=tmp_path / "src", progress=False)
    cfg = tiny_config(tgt) | {"strategy": {"name": "full"}}
    cfg["model"] |= {"weights": str(tmp_path / "src" / "model.safetensors"), "num_classes": 3}
    res = source_only(cfg, tmp_path / "so")
    from transferkit.api import prepare
    from transferkit.engine.evaluate import evaluate

    p = prepare(parse_config(cfg))
    assert res.metrics["test/accuracy"] == pytest.approx(evaluate(source.model, p.test)["accuracy"])
    cfg["model"]["num_classes"] = 4  # another label space: no source-only row
    assert source_only(cfg, tmp_path / "so4") is None and not (tmp_path / "so4").exists()


@pytest.mark.parametrize("strategy", ["dann", "cdan_e", "mcd"])
def test_adversarial_and_mcd_runs_train_under_bf16_autocast(tmp_path, strategy):
    cfg = da_config(tmp_path, strategy, val_fraction=0.0)
    cfg["train"] |= {"mixed_precision": "bf16", "epochs": 1}
    res = train(cfg, out=tmp_path / "run", progress=False)
    assert all(np.isfinite(v) for k, v in res.history[0].items() if k.startswith("train/"))


def test_mcd_keeps_the_terms_of_the_parts_composed_with_it(tmp_path):
    from transferkit.engine.trainer import Trainer
    from transferkit.config import TrainSettings

    strategy = create_strategy("mcd+dann")
    use_unlabelled(strategy, images(12, seed=3))
    model = tiny_model()
    strategy.prepare_model(model)
    before = [p.detach().clone() for p in strategy.parts[1].disc.parameters()]
    history = Trainer(TrainSettings(epochs=1, batch_size=6, lr=0.01, device="cpu"), progress=False).fit(
        model, strategy, images(12))
    assert "train/dann/domain" in history[0]
    assert any(not torch.equal(a, b) for a, b in zip(before, strategy.parts[1].disc.parameters()))


def test_a_discriminator_adds_its_own_parameters_without_unfreezing_the_model(tmp_path):
    from transferkit.engine.trainer import Trainer
    from transferkit.config import TrainSettings

    strategy = create_strategy("partial+dann", partial={"k": 1}, dann={})
    use_unlabelled(strategy, images(12, seed=3))
    model = tiny_model()
    first = [p.detach().clone() for p in model.backbone.stages()[0].parameters()]
    Trainer(TrainSettings(epochs=1, batch_size=6, lr=0.01, device="cpu"), progress=False).fit(model, strategy, images(12))
    assert all(torch.equal(a, b) for a, b in zip(first, model.backbone.stages()[0].parameters()))  # still frozen
    assert all(p.requires_grad for p in strategy.parts[1].disc.parameters())


def test_the_importance_weights_are_learnt_on_source_training_rows_and_weigh_the_validation_rows(monkeypatch):
    from transferkit.runs import domain

    seen = {}

    def ratio(src, tgt, query, seed=0):
        seen.update(src=len(src), tgt=len(tgt), query=len(query))
        return np.ones(len(query))

    monkeypatch.setattr(domain, "density_ratio", ratio)
    scores = domain.TargetScores(images(15, seed=1), images(12, seed=2), images(10, seed=4))(tiny_model())
    assert seen == {"src": 12, "tgt": 15, "query": 10}
    assert scores["val/iwv"] == pytest.approx(scores["val/dev"])  # equal weights: both are the mean loss


def test_domain_adaptation_is_refused_for_other_task_types(tmp_path):
    cfg = da_config(tmp_path, "coral")
    cfg["model"] |= {"task": "regression", "num_classes": 1}
    with pytest.raises(TransferkitError, match="class labels"):
        train(cfg, out=tmp_path / "run", progress=False)
    strategy = create_strategy("coral")
    use_unlabelled(strategy, images(6))
    with pytest.raises(TransferkitError, match="multi-task"):
        strategy.prepare_batch(Batch(torch.zeros(2, 1, 8, 8), {"a": torch.tensor([0, 1])}))


def test_the_target_order_follows_the_run_seed_unless_given():
    a, b, c = create_strategy("dann"), create_strategy("dann"), create_strategy("dann", seed=7)
    for s, seed in ((a, 0), (b, 1), (c, 1)):
        model = tiny_model()
        torch.manual_seed(seed)  # as the trainer seeds with train.seed before prepare_model
        s.prepare_model(model)
    assert (a.seed, b.seed, c.seed) == (0, 1, 7)
