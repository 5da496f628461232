import numpy as np
import pytest
import torch

from transferkit import train
from transferkit.api import load_run
from transferkit.backbones import create_backbone
from transferkit.engine.trainer import Trainer
from transferkit.errors import TransferkitError
from transferkit.finetune import LoRA, load_adapter, merge_lora, save_adapter
from transferkit.heads import create_head
from transferkit.model import TransferModel
from tests.conftest import tiny_config
from tests.unit.test_strategies import settings, tiny_data, tiny_model


def _trained_lora_model():
    model = tiny_model()
    base = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    Trainer(settings(epochs=3, lr=0.05), progress=False).fit(model, LoRA(r=2), tiny_data())
    return model, base


def test_only_lora_and_head_parameters_change():
    model, base = _trained_lora_model()
    for k, v in model.backbone.state_dict().items():
        if "lora_" not in k:  # base weights and BatchNorm statistics untouched
            key = k.replace(".base_layer", "")
            assert torch.equal(v, base[key]), k
    assert any(("lora_B" in k) and v.abs().sum() > 0 for k, v in model.backbone.state_dict().items())


def test_merged_model_gives_the_same_outputs():
    model, _ = _trained_lora_model()
    model.eval()
    x = tiny_data().x[:6]
    with torch.no_grad():
        before = model(x).logits
        merge_lora(model)
        after = model(x).logits
    assert torch.allclose(before, after, atol=1e-5)


def test_adapter_saves_alone_and_loads_back(tmp_path):
    model, _ = _trained_lora_model()
    path = save_adapter(model, tmp_path / "adapter.safetensors")
    fresh = LoRA(r=2).prepare_model(tiny_model())
    load_adapter(fresh, path)
    model.eval(), fresh.eval()
    x = tiny_data().x[:4]
    assert torch.allclose(model(x).logits, fresh(x).logits, atol=1e-6)
    assert path.stat().st_size < 0.5 * sum(v.numel() * 4 for v in model.state_dict().values())


@pytest.mark.parametrize("name,kwargs,limit", [("resnet18", {}, 0.05), ("hf_text", {}, 0.05)])
def test_lora_trains_under_five_percent_of_a_real_backbone(name, kwargs, limit):
    bb = create_backbone(name, **kwargs)
    model = TransferModel(bb, create_head("linear", bb.num_features, 2))
    total = sum(p.numel() for p in model.parameters())
    targets = ["query", "value"] if name == "hf_text" else None
    s = LoRA(r=4, target_modules=targets)
    s.prepare_model(model)
    trainable = sum(p.numel() for g in s.phases(model, 1, 0.01)[0].groups for p in g["params"])
    assert 0 < trainable < limit * total


def test_lora_run_reloads_for_prediction(tiny_npz, tmp_path):
    cfg = tiny_config(tiny_npz) | {"strategy": {"name": "lora", "args": {"r": 2}}}
    res = train(cfg, out=tmp_path / "r", progress=False)
    run = load_run(tmp_path / "r")
    xs = np.load(tiny_npz)["x"][:5].astype("float32")
    res.model.eval()
    expected = torch.softmax(res.model(torch.as_tensor(xs)).logits, -1).detach().numpy()
    assert np.allclose(run.predict(xs), expected, atol=1e-6)


def test_bad_target_modules_are_named():
    with pytest.raises(TransferkitError, match="'target_modules'"):
        LoRA(target_modules=["nothing_like_this"]).prepare_model(tiny_model())
