"""Federated pieces that need no Flower: the Dirichlet split, what is exchanged and its bytes, FedProx's
term, the config section, and the one-sentence refusal when Flower is missing."""

import sys

import numpy as np
import pytest
import torch

from transferkit.config import FederatedConfig, parse_config
from transferkit.errors import TransferkitError
from transferkit.federated import Proximal, dirichlet_label_split, label_counts, label_skew, proximal_penalty
from transferkit.federated.arrays import array_bytes, get_arrays, model_bytes, set_arrays, trainable_names
from transferkit.finetune import create_strategy
from transferkit.heads import create_head
from transferkit.backbones import create_backbone
from transferkit.model import TransferModel
from transferkit.tasks import create_task

Y = np.repeat(np.arange(10), 60)  # 600 rows, 10 balanced classes


@pytest.mark.parametrize("alpha", [0.1, 0.5, 100.0])
def test_split_puts_every_row_in_exactly_one_client(alpha):
    shares = dirichlet_label_split(Y, clients=5, alpha=alpha, seed=3)
    joined = np.concatenate(shares)
    assert len(shares) == 5 and len(joined) == len(Y)
    assert np.array_equal(np.sort(joined), np.arange(len(Y)))


def test_split_is_seeded():
    a = dirichlet_label_split(Y, 5, 0.5, seed=7)
    b = dirichlet_label_split(Y, 5, 0.5, seed=7)
    c = dirichlet_label_split(Y, 5, 0.5, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_skew_grows_as_alpha_shrinks():
    skew = {a: np.mean([label_skew(Y, dirichlet_label_split(Y, 5, a, seed=s), 10) for s in range(5)])
            for a in (100.0, 1.0, 0.1)}
    assert skew[100.0] < 0.1 < skew[1.0] < skew[0.1]
    assert skew[0.1] > 0.5


def test_skew_of_iid_and_disjoint_shares():
    y = np.repeat(np.arange(2), 4)
    assert label_skew(y, [np.array([0, 1, 4, 5]), np.array([2, 3, 6, 7])], 2) == 0.0
    assert label_skew(y, [np.arange(4), np.arange(4, 8)], 2) == pytest.approx(0.5)
    assert label_counts(y, [np.arange(4), np.arange(4, 8)], 2).tolist() == [[4, 0], [0, 4]]


def test_split_keeps_min_rows_and_refuses_impossible_ones():
    shares = dirichlet_label_split(Y, 5, 0.1, seed=0, min_rows=40)
    assert min(len(s) for s in shares) >= 40
    with pytest.raises(TransferkitError, match="fewer clients"):
        dirichlet_label_split(Y[:20], 5, 0.5, seed=0, min_rows=10)
    with pytest.raises(TransferkitError, match="'alpha' must be a number > 0"):
        dirichlet_label_split(Y, 5, 0.0, seed=0)


def _model():
    torch.manual_seed(0)
    bb = create_backbone("small_cnn", in_channels=1, width=4, num_features=8)
    return TransferModel(bb, create_head("linear", 8, 3), task_type=create_task("classification"))


def test_head_only_strategy_exchanges_the_head_alone_and_counts_its_bytes():
    model = _model()
    strategy = create_strategy("feature_extraction")
    names = trainable_names(strategy.prepare_model(model), strategy)
    assert names == ["heads.main.1.weight", "heads.main.1.bias"]
    arrays = get_arrays(model, names)
    assert array_bytes(arrays) == (3 * 8 + 3) * 4 == array_bytes(list(arrays.values()))
    params = sum(p.numel() for p in model.parameters()) * 4
    assert params < model_bytes(model) == sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert array_bytes(arrays) < 0.05 * model_bytes(model)


def test_every_parameter_is_exchanged_without_phases_and_set_arrays_round_trips():
    model = _model()
    names = trainable_names(model, create_strategy("full"))
    assert names == [n for n, _ in model.named_parameters()]
    arrays = {n: np.full_like(a, 0.5) for n, a in get_arrays(model, names[-2:]).items()}
    set_arrays(model, arrays)
    assert all(np.array_equal(get_arrays(model, [n])[n], a) for n, a in arrays.items())


def test_proximal_penalty_by_hand_and_zero_at_the_anchor():
    p = [torch.tensor([1.0, 2.0]), torch.tensor([[3.0]])]
    a = [torch.tensor([0.0, 0.0]), torch.tensor([[1.0]])]
    assert float(proximal_penalty(p, a, mu=0.1)) == pytest.approx(0.05 * (1 + 4 + 4))
    assert float(proximal_penalty(p, p, mu=0.1)) == 0.0


def test_proximal_strategy_pulls_towards_the_global_tensors():
    model = _model()
    names = ["heads.main.1.weight", "heads.main.1.bias"]
    anchors = {n: a + 1.0 for n, a in get_arrays(model, names).items()}
    terms = Proximal(0.2, anchors).loss_terms(None, None, model)
    assert float(terms["penalty"].detach()) == pytest.approx(0.1 * (3 * 8 + 3))
    terms["penalty"].backward()
    assert torch.allclose(model.heads.main[1].bias.grad, torch.full((3,), -0.2))


def _cfg(**federated):
    return {"data": {"dataset": "mnist_usps:usps", "test_fraction": 0.3}, "federated": federated}


def test_config_section_defaults_and_refusals():
    cfg = parse_config(_cfg(clients=3), schema=FederatedConfig)
    assert (cfg.federated.clients, cfg.federated.alpha, cfg.federated.strategy, cfg.federated.dp) == (3, 0.5, "fedavg", None)
    with pytest.raises(TransferkitError, match="needs federated.proximal_mu > 0"):
        parse_config(_cfg(strategy="fedprox"), schema=FederatedConfig)
    with pytest.raises(TransferkitError, match="applies to strategy 'fedprox' only"):
        parse_config(_cfg(proximal_mu=0.1), schema=FederatedConfig)
    with pytest.raises(TransferkitError, match="federated.alpha"):
        parse_config(_cfg(alpha=0), schema=FederatedConfig)
    dp = parse_config(_cfg(dp={"noise_multiplier": 1.0, "clipping_norm": 2.0}), schema=FederatedConfig).federated.dp
    assert (dp.noise_multiplier, dp.clipping_norm, dp.side) == (1.0, 2.0, "server")
    with pytest.raises(TransferkitError, match="federated.dp.side"):
        parse_config(_cfg(dp={"noise_multiplier": 1.0, "clipping_norm": 2.0, "side": "both"}), schema=FederatedConfig)
    with pytest.raises(TransferkitError, match="federated.dp.clipping_norm' is required"):
        parse_config(_cfg(dp={"noise_multiplier": 1.0}), schema=FederatedConfig)
    with pytest.raises(TransferkitError, match=r"^config: data.test_fraction 'rest' leaves the clients no rows"):
        parse_config({"data": {"dataset": "mnist_usps:usps", "test_fraction": "rest"}}, schema=FederatedConfig)
    with pytest.raises(TransferkitError, match="remove data.shots"):
        parse_config(_cfg() | {"data": {"dataset": "mnist_usps:usps", "shots": 5}}, schema=FederatedConfig)


def test_missing_flower_is_one_sentence_naming_the_extra(monkeypatch, tmp_path, capsys):
    from transferkit import cli
    from transferkit.federated.run import FLOWER_MISSING, run_federated

    monkeypatch.setitem(sys.modules, "flwr", None)  # as if Flower were not installed
    with pytest.raises(TransferkitError) as err:
        run_federated(_cfg(), out=tmp_path / "run")
    assert str(err.value) == FLOWER_MISSING and "transferkit[federated]" in FLOWER_MISSING
    assert FLOWER_MISSING.count(". ") == 0 and FLOWER_MISSING.endswith(".")
    assert not (tmp_path / "run").exists()
    (tmp_path / "c.yaml").write_text("data: {dataset: mnist_usps:usps}\n")
    monkeypatch.setattr(sys, "argv", ["transferkit", "federated", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "r")])
    with pytest.raises(SystemExit) as code:
        cli.main()
    assert code.value.code == 2
    assert "pip install 'transferkit[federated]'" in " ".join(capsys.readouterr().err.split())
    monkeypatch.setattr(sys, "argv", ["transferkit", "--help"])
    try:
        cli.main()
    except SystemExit as done:
        assert done.code in (0, None)
    assert "federated" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["adapters", "lora"])
def test_parameter_efficient_strategies_exchange_their_own_tensors_and_the_head(name):
    if name == "lora":
        pytest.importorskip("peft")
    model = _model()
    strategy = create_strategy(name)
    model = strategy.prepare_model(model)
    names = trainable_names(model, strategy)
    key = "adapters" if name == "adapters" else "lora_"
    assert {"heads.main.1.weight", "heads.main.1.bias"} < set(names)
    assert all(n.startswith("heads.") or key in n for n in names) and any(key in n for n in names)
    assert array_bytes(get_arrays(model, names)) < model_bytes(model)


def test_strategies_that_train_batchnorm_are_refused_and_dp_weighs_clients_alike():
    from transferkit.federated.setup import build

    cnn = {"backbone": "small_cnn", "backbone_args": {"in_channels": 1, "width": 4, "num_features": 8}, "num_classes": 10}
    cfg = parse_config(_cfg() | {"model": cnn, "strategy": {"name": "feature_extraction"}}, schema=FederatedConfig)
    assert all(n.startswith("heads.") for n in build(cfg)[2])  # the frozen backbone's BatchNorm keeps its statistics
    with pytest.raises(TransferkitError, match="trains the BatchNorm layer 'backbone.*running statistics.*feature_extraction"):
        build(parse_config(_cfg() | {"model": cnn, "strategy": {"name": "full"}}, schema=FederatedConfig))
    pytest.importorskip("flwr")
    from transferkit.federated.server import RoundLog, make_strategy

    plain = make_strategy(parse_config(_cfg(), schema=FederatedConfig).federated, RoundLog())
    private = make_strategy(parse_config(_cfg(dp={"noise_multiplier": 1.0, "clipping_norm": 2.0}),
                                         schema=FederatedConfig).federated, RoundLog())
    assert plain.weighted_by_key == "num-examples" and private.strategy.weighted_by_key == "dp-weight"
