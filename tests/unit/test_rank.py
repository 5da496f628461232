"""``rank``: candidate parsing, the feature cache, the order on a constructed case, the reference
warning, and the errors raised before any feature is extracted."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import transferkit.runs.rank as rank_mod
from transferkit.backbones import create_backbone
from transferkit.backbones.base import Backbone
from transferkit.config import dump_config, parse_config
from transferkit.data.datasets import ArrayDataset
from transferkit.engine.progress import EpochProgress
from transferkit.errors import TransferkitError
from transferkit.heads import create_head
from transferkit.model import TransferModel
from transferkit.runs.candidates import Built, parse_candidate, parse_candidates
from transferkit.runs.domain import domain_distances
from transferkit.runs.rank import rank, reference_warning
from transferkit.select import leep, logme


def _data(path, seed=0, shift=0.0):
    """30 rows of 8-d vectors, 3 classes: class c adds 2 to dimension c (dimensions 3..7 are noise)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), 10)
    x = rng.normal(size=(30, 8)).astype(np.float32) + 2.0 * np.eye(3, 8, dtype=np.float32)[y] + shift
    np.savez(path, x=x, y=y)
    return path, x, y


def _run_dir(root, data, dims=(0, 1, 2), scale=5.0):
    """A run directory by hand: an mlp whose one hidden layer copies ``scale`` x the input ``dims``
    (features relu(scale x[:, dims])), and an identity classifier head."""
    cfg = parse_config({"data": {"dataset": str(data)}, "model": {"backbone": "mlp", "num_classes": 3,
                                                                  "backbone_args": {"in_features": 8, "hidden": [3]}}})
    model = TransferModel(create_backbone("mlp", in_features=8, hidden=(3,)), create_head("linear", 3, 3))
    w = torch.zeros(3, 8)
    w[torch.arange(3), torch.tensor(dims)] = scale
    with torch.no_grad():
        model.backbone.blocks[1].weight.copy_(w)
        model.backbone.blocks[1].bias.zero_()
        model.heads["main"][1].weight.copy_(torch.eye(3))
        model.heads["main"][1].bias.zero_()
    root.mkdir()
    (root / "config.yaml").write_text(dump_config(cfg))
    save_file(model.state_dict(), str(root / "model.safetensors"))
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_candidates_are_parsed_by_form(tmp_path):
    data, _, _ = _data(tmp_path / "d.npz")
    run = parse_candidate(str(_run_dir(tmp_path / "run", data)))
    assert (run.kind, run.backbone, run.args, run.source) == ("run", "mlp", {"in_features": 8, "hidden": [3]}, str(data))
    w = tmp_path / "w.safetensors"
    save_file(create_backbone("small_cnn").state_dict(), str(w))
    c = parse_candidate(f"small_cnn={w}")
    assert (c.kind, c.backbone, c.weights) == ("weights", "small_cnn", str(w))
    assert parse_candidate("resnet18=imagenet").weights == "imagenet"
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    c = parse_candidate(str(tmp_path / "hf"))
    assert (c.kind, c.backbone, c.weights) == ("hf", "hf_text", str(tmp_path / "hf"))
    ref = parse_candidate("random:mlp")
    assert (ref.kind, ref.backbone, ref.weights) == ("random", "mlp", None)
    assert [c.spec for c in parse_candidates(f" random:mlp , small_cnn={w}")] == ["random:mlp", f"small_cnn={w}"]


@pytest.mark.parametrize("spec, message", [
    ("random:smal_cnn", "Candidate 'random:smal_cnn': Unknown backbone 'smal_cnn'. Did you mean 'small_cnn'?"),
    ("small_cnn=missing.safetensors", "the weights 'missing.safetensors' do not exist; check the path"),
    ("small_cnn", "names a backbone without weights; give them as small_cnn=PATH, or write random:small_cnn"),
    ("nothing_here", "is neither an existing path nor a backbone; give a run directory, BACKBONE=WEIGHTS"),
])
def test_bad_candidates_are_refused_with_the_fix(spec, message):
    with pytest.raises(TransferkitError, match=message.replace("(", r"\(").replace("?", r"\?")):
        parse_candidate(spec)


def test_files_and_folders_that_are_not_candidates(tmp_path):
    w = tmp_path / "w.pt"
    torch.save({}, w)
    with pytest.raises(TransferkitError, match=r"is a weights file; name its backbone as BACKBONE="):
        parse_candidate(str(w))
    with pytest.raises(TransferkitError, match="neither config.yaml .* nor config.json"):
        parse_candidate(str(tmp_path))
    with pytest.raises(TransferkitError, match="names 'random:mlp' twice"):
        parse_candidates("random:mlp,random:mlp")


def test_the_informative_candidate_ranks_first_with_its_scores_computed_on_its_features(tmp_path, cache):
    data, x, y = _data(tmp_path / "d.npz")
    run = _run_dir(tmp_path / "run", data)
    res = rank(str(data), [str(run)], test_fraction=0.0, progress=False)  # every row
    by = {r["candidate"]: r for r in res.rows}
    assert [r["candidate"] for r in res.rows] == [str(run), "random:mlp"] and res.warning is None
    feats = np.maximum(5.0 * x[:, :3], 0.0)  # the hand-set layer
    assert by[str(run)]["logme"] == pytest.approx(logme(feats, y), rel=1e-5)
    probs = torch.softmax(torch.as_tensor(feats, dtype=torch.float64), -1).numpy()  # the identity head
    assert by[str(run)]["leep"] == pytest.approx(leep(probs, y), rel=1e-5)
    assert np.isnan(by["random:mlp"]["leep"]) and by["random:mlp"]["kind"] == "reference"
    # its source data is the target itself here: the distance is measured on the same rows
    assert by[str(run)]["mmd"] == pytest.approx(domain_distances(feats, feats)["mmd"], abs=1e-6)
    assert by[str(run)]["features"] == 3 and by[str(run)]["rows"] == 30


def test_shots_score_k_rows_per_class_and_the_distance_uses_the_source(tmp_path, cache):
    data, _, _ = _data(tmp_path / "src.npz")
    target, xt, yt = _data(tmp_path / "tgt.npz", seed=1, shift=1.0)
    run = _run_dir(tmp_path / "run", data)
    res = rank(str(target), [str(run)], shots=4, seed=3, progress=False)
    row = next(r for r in res.rows if r["candidate"] == str(run))
    assert row["rows"] == 12
    from transferkit.data.splits import make_splits

    keep = make_splits(yt, seed=3, val_fraction=0.0, test_fraction=0.2, shots=4).train
    from transferkit.runs.domain import sample_rows

    xs = np.load(data)["x"]
    xs = xs[sample_rows(len(xs), len(keep), seed=3)]  # as many source rows as target rows, a seeded draw
    assert len(xs) == 12
    expected = domain_distances(np.maximum(5.0 * xs[:, :3], 0), np.maximum(5.0 * xt[keep, :3], 0), seed=3)
    assert row["mmd"] == pytest.approx(expected["mmd"], rel=1e-5) and row["mmd"] > 0.05
    assert row["pad"] == pytest.approx(expected["pad"])


@pytest.mark.parametrize("shots", [None, 3])
def test_rank_never_reads_the_test_rows_of_runs_with_the_same_seed(shots):
    from transferkit.data.splits import make_splits
    from transferkit.runs.rank import _rows

    y = np.repeat(np.arange(5), 40)
    for seed in range(3):
        rows = _rows(y, shots, seed)
        for val, guard in [(0.1, 0.0), (0.0, 0.1), (0.2, 0.1)]:  # whatever else the run holds out
            test = make_splits(y, seed=seed, val_fraction=val, test_fraction=0.2, shots=5, guard_fraction=guard).test
            assert not set(rows.tolist()) & set(test.tolist())
        assert len(rows) == (160 if shots is None else 5 * shots)


def test_features_come_from_the_cache_on_the_second_call(tmp_path, cache, monkeypatch):
    data, _, _ = _data(tmp_path / "d.npz")
    run = _run_dir(tmp_path / "run", data)
    first = rank(str(data), [str(run)], progress=False)
    assert not any(r["cached"] for r in first.rows)

    def no_extraction(*args):
        raise AssertionError("features were extracted again")

    with monkeypatch.context() as m:
        m.setattr(rank_mod, "_extract", no_extraction)
        second = rank(str(data), [str(run)], progress=False)
    assert all(r["cached"] for r in second.rows)
    assert [r["logme"] for r in second.rows] == [r["logme"] for r in first.rows]
    _run_dir(tmp_path / "run2", data, scale=4.0)  # other weights, same paths otherwise: a cache miss
    (run / "model.safetensors").write_bytes((tmp_path / "run2" / "model.safetensors").read_bytes())
    third = {r["candidate"]: r for r in rank(str(data), [str(run)], progress=False).rows}
    assert not third[str(run)]["cached"] and third["random:mlp"]["cached"]  # keyed on the files' content
    assert third[str(run)]["logme"] != first.rows[0]["logme"]
    # the reference's features of the target rows; for both weights, those of the target rows and of the
    # source sample (here the whole file, the target rows leave its test split out)
    assert len(list(cache.rglob("*.npz"))) == 5


def test_the_reference_warning():
    row = lambda name, kind, score: {"candidate": name, "kind": kind, "backbone": "mlp", "features": 3,  # noqa: E731
                                     "logme": score}
    assert reference_warning([row("ref", "reference", 0.5), row("a", "run", 0.4), row("b", "weights", 0.1)],
                             "logme").startswith("Every candidate's logme is below")
    assert reference_warning([row("ref", "reference", 0.5), row("a", "run", 0.6), row("b", "weights", 0.1)],
                             "logme") is None
    assert reference_warning([row("ref", "reference", float("nan")), row("a", "run", 0.4)], "logme") is None


def test_a_candidate_that_sees_only_noise_is_flagged_below_the_reference(tmp_path, cache):
    data, _, _ = _data(tmp_path / "d.npz")
    noise = _run_dir(tmp_path / "run", data, dims=(3, 4, 5))  # the dimensions without class signal
    res = rank(str(data), [str(noise)], out=tmp_path / "out", progress=False)
    assert res.rows[0]["candidate"] == "random:mlp" and res.warning is not None
    assert "Warning: Every candidate&#x27;s logme is below" in (tmp_path / "out" / "rank.html").read_text()
    inputs = json.loads((tmp_path / "out" / "inputs.json").read_text())
    assert [c["spec"] for c in inputs["candidates"]] == [str(noise), "random:mlp"] and inputs["rows"] == 24  # the test split's 6 rows unread


def test_errors_come_before_any_extraction(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(rank_mod, "_extract", lambda *a: (_ for _ in ()).throw(AssertionError("extracted")))
    data, _, _ = _data(tmp_path / "d.npz")
    w = tmp_path / "w.safetensors"
    save_file(create_backbone("mlp", in_features=8).state_dict(), str(w))
    with pytest.raises(TransferkitError, match="Unknown transferability score 'logm'. Did you mean 'logme'"):
        rank(str(data), f"mlp={w}", metric="logm")
    with pytest.raises(TransferkitError, match=f"Metric 'leep' reads .* candidate 'mlp={w}' has no classifier head"):
        rank(str(data), f"mlp={w}", metric="leep")
    with pytest.raises(TransferkitError, match="Candidate 'random:small_cnn' takes image inputs but the target"):
        rank(str(data), "random:small_cnn")
    with pytest.raises(TransferkitError, match="Class 0 has only 8 examples"):  # 10 less the test split's 2
        rank(str(data), f"mlp={w}", shots=9)
    with pytest.raises(TransferkitError, match="--test-fraction must be in"):
        rank(str(data), f"mlp={w}", test_fraction=1.0)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("")
    with pytest.raises(TransferkitError, match="'.*out' already exists; pass --overwrite"):
        rank(str(data), f"mlp={w}", out=tmp_path / "out")


class _ViewCNN(Backbone):
    """A convolution whose output is flattened with ``view``, which a channels-last output refuses."""

    num_features = 4 * 6 * 6

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 4, 3)

    def features(self, x):
        return self.conv(x).view(len(x), -1)


class _Conv3dNet(_ViewCNN):
    """A 5-D weight, which channels-last memory cannot hold."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Conv3d(1, 1, 1)


@pytest.mark.parametrize("make,channels_last", [(lambda: create_backbone("small_cnn", in_channels=2), True),
                                                 (_ViewCNN, False), (_Conv3dNet, False)])
def test_extraction_runs_channels_last_where_the_backbone_can_with_the_same_features(make, channels_last):
    torch.manual_seed(0)
    data = ArrayDataset(torch.randn(40, 2, 8, 8), np.repeat(np.arange(4), 10))
    rows = np.arange(40)
    backbone = make().eval()
    with torch.no_grad():
        expected = backbone.features(data.x).numpy()
    built = Built(backbone)
    rank_mod._fit_layout(parse_candidate("random:small_cnn"), built, data, rows, "t.npz")
    conv = next(m for m in backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) == channels_last
    with EpochProgress(len(rows), False) as bar:
        got = rank_mod._extract(built, data, rows, bar)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
