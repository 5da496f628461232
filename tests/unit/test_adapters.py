import torch

from transferkit.backbones import create_backbone
from transferkit.engine.trainer import Trainer
from transferkit.finetune import Adapters
from transferkit.heads import create_head
from transferkit.model import TransferModel
from tests.unit.test_strategies import settings, tiny_data, tiny_model


def test_inserted_adapters_start_as_the_identity():
    model = tiny_model().eval()
    x = tiny_data().x[:4]
    before = model(x).features
    Adapters(stages=3).prepare_model(model)
    assert torch.equal(before, model(x).features)


def test_only_adapters_and_head_change():
    model = tiny_model()
    base = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    Trainer(settings(epochs=3, lr=0.05), progress=False).fit(model, Adapters(stages=2), tiny_data())
    for k, v in model.backbone.state_dict().items():
        if not k.startswith("adapters."):
            assert torch.equal(v, base[k]), k
    assert any(v.abs().sum() > 0 for k, v in model.backbone.state_dict().items() if ".up." in k)


def test_adapters_on_real_backbones_train_under_five_percent():
    for name in ("resnet18", "hf_text"):
        bb = create_backbone(name)
        model = TransferModel(bb, create_head("linear", bb.num_features, 2))
        s = Adapters(reduction=16, stages=2)
        s.prepare_model(model)
        trainable = sum(p.numel() for g in s.phases(model, 1, 0.01)[0].groups for p in g["params"])
        assert 0 < trainable < 0.05 * sum(p.numel() for p in model.parameters()), name
        model.eval()
        x = ["a fine kettle", "broke at once"] if name == "hf_text" else torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            assert model(x).logits.shape == (2, 2)


def test_adapters_save_alone_and_load_into_the_source_model(tmp_path):
    from transferkit.finetune import load_adapter, save_adapter

    model = tiny_model()
    Trainer(settings(epochs=3, lr=0.05), progress=False).fit(model, Adapters(stages=2), tiny_data())
    path = save_adapter(model, tmp_path / "adapters.safetensors")
    from safetensors.torch import load_file

    saved = load_file(str(path))
    assert saved and all(k.startswith(("backbone.adapters.", "heads.")) for k in saved)
    other = Adapters(stages=2).prepare_model(tiny_model())  # the same source weights, fresh adapters
    load_adapter(other, path)
    x = tiny_data().x[:4]
    assert torch.equal(model.eval()(x).logits, other.eval()(x).logits)
