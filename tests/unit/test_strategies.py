import numpy as np
import pytest
import torch

from transferkit.adapt import use_unlabelled
from transferkit.backbones import create_backbone
from transferkit.config import TrainSettings
from transferkit.data import ArrayDataset
from transferkit.engine.trainer import Trainer
from transferkit.errors import TransferkitError
from transferkit.finetune import STRATEGIES, Compose, FeatureExtraction, Strategy, TwoStage, create_strategy
from transferkit.heads import create_head
from transferkit.model import TransferModel


def tiny_model(seed=0):
    torch.manual_seed(seed)
    bb = create_backbone("small_cnn", in_channels=1, width=4, num_features=8)
    return TransferModel(bb, create_head("linear", 8, 3))


def tiny_data(n=24):
    rng = np.random.default_rng(0)
    return ArrayDataset(rng.random((n, 8, 8), dtype=np.float32), np.arange(n) % 3)


def settings(**kw):
    return TrainSettings(**({"epochs": 2, "batch_size": 8, "lr": 0.01, "device": "cpu"} | kw))


# Strategies that cannot have a default for some argument, and what the contract test gives them.
REQUIRED = {"kd": lambda: {"teacher": tiny_model(seed=5)}, "joint": lambda: {"source": tiny_data(12)}}


def fusion_model(seed=0):
    torch.manual_seed(seed)
    from transferkit.backbones import FusionBackbone

    srcs = [create_backbone("small_cnn", in_channels=1, width=4, num_features=n) for n in (8, 6)]
    return TransferModel(FusionBackbone(srcs), create_head("linear", 8, 3))


MODELS = {"fusion": fusion_model}  # strategies that need a particular backbone


def test_required_arguments_are_named_when_missing():
    for name in REQUIRED:
        with pytest.raises(TransferkitError, match="required"):
            create_strategy(name)


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_strategy_builds_trains_and_round_trips(name, tmp_path):
    args = REQUIRED.get(name, dict)()
    strategy = create_strategy(name, **args)
    use_unlabelled(strategy, tiny_data(10))  # domain adaptation: unlabelled target rows
    model = MODELS.get(name, tiny_model)()
    history = Trainer(settings(), tmp_path, progress=False).fit(model, strategy, tiny_data(), tiny_data(9))
    assert len(history) == 2 and all(np.isfinite(r["train/task"]) for r in history)
    from safetensors.torch import load_model, save_model

    save_model(model, str(tmp_path / "m.safetensors"))
    other = create_strategy(name, **args).prepare_model(MODELS.get(name, tiny_model)(seed=1))  # same structure, as load_run builds it
    load_model(other, str(tmp_path / "m.safetensors"))
    x = tiny_data().x[:4]
    model.eval(), other.eval()
    assert torch.equal(model(x).logits, other(x).logits)


@pytest.mark.parametrize("name,kwargs,bad", [
    ("two_stage", {"head_fraction": 1.5}, "head_fraction"),
    ("two_stage", {"finetune_lr_scale": -1}, "finetune_lr_scale"),
    ("full", {"backbone_lr_scale": "x"}, "backbone_lr_scale"),
    ("feature_extraction", {"cach": True}, "cach"),
    ("partial", {"k": -1}, "k"),
    ("partial", {"k": 1.5}, "k"),
    ("discriminative", {"decay": 2.0}, "decay"),
    ("l2sp", {"weight": -1.0}, "weight"),
    ("delta", {"weight": -0.1}, "weight"),
    ("delta", {"stages": 0}, "stages"),
    ("bss", {"k": 0}, "k"),
    ("lora", {"r": 0}, "r"),
    ("adapters", {"reduction": 0}, "reduction"),
    ("kd", {"temperature": 0}, "temperature"),
    ("kd", {"teacher": tiny_model(), "feature_weight": -1}, "feature_weight"),
    ("joint", {"source": "mnist_usps:mnist", "weight": 1.0}, "weight"),
    ("joint", {"source": "mnist_usps:mnist", "ramp_steps": -1}, "ramp_steps"),
])
def test_bad_parameters_are_rejected_by_name(name, kwargs, bad):
    with pytest.raises(TransferkitError, match=f"'{bad}'"):
        create_strategy(name, **kwargs)


def test_unknown_strategy_suggests_a_name():
    with pytest.raises(TransferkitError, match="Did you mean 'two_stage'"):
        create_strategy("two_stag")


def test_feature_extraction_keeps_the_backbone_bit_identical():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = [p.clone() for p in model.heads.parameters()]
    Trainer(settings(epochs=3), progress=False).fit(model, FeatureExtraction(), tiny_data())
    for k, v in model.backbone.state_dict().items():  # weights and BatchNorm statistics
        assert torch.equal(v, before[k]), k
    assert any(not torch.equal(a, b) for a, b in zip(head_before, model.heads.parameters()))


def test_feature_cache_gives_the_same_head_as_recomputing():
    heads = []
    for cache in (True, False):
        model = tiny_model()
        Trainer(settings(epochs=3), progress=False).fit(model, FeatureExtraction(cache=cache), tiny_data())
        heads.append(torch.cat([p.flatten() for p in model.heads.parameters()]))
    assert torch.allclose(heads[0], heads[1], atol=1e-5)


def test_scratch_reinitialises_loaded_weights():
    model = tiny_model()
    w = model.backbone.blocks[0][0].weight.clone()
    create_strategy("scratch", seed=3).prepare_model(model)
    assert not torch.equal(w, model.backbone.blocks[0][0].weight)


def test_two_stage_freezes_backbone_in_stage_one():
    model = tiny_model()
    phases = TwoStage(head_fraction=0.5, finetune_lr_scale=0.1).phases(model, 4, 0.01)
    assert [p.epochs for p in phases] == [2, 2]
    assert phases[1].groups[0]["lr"] == pytest.approx(0.001)
    head_ids = {id(p) for p in model.heads.parameters()}
    assert {id(p) for p in phases[0].groups[0]["params"]} == head_ids


class _Penalty(Strategy):
    name = "penalty"

    def loss_terms(self, batch, out, model):
        return {"l2": 0.0 * out.logits.pow(2).mean()}


def test_compose_merges_loss_terms_with_prefixed_names(tmp_path):
    history = Trainer(settings(epochs=1), progress=False).fit(tiny_model(), Compose([create_strategy("full"), _Penalty()]),
                                                              tiny_data())
    assert "train/penalty/l2" in history[0] and "train/task" in history[0]
