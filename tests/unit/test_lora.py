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


class _Depthwise(torch.nn.Module):
    """A tiny backbone with a depthwise convolution between two ordinary layers (MobileNet-style)."""

    num_features, input_kind = 6, "image"

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.expand = torch.nn.Conv2d(1, 8, 1)
        self.depthwise = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.proj = torch.nn.Linear(8, 6)

    def stages(self):
        return [self.expand, self.depthwise, self.proj]

    def features(self, x):
        return self.proj(self.depthwise(self.expand(x)).mean((2, 3)))

    def forward(self, x):
        return self.features(x)


def test_default_targets_skip_depthwise_convolutions_and_the_model_still_merges():
    from transferkit.finetune.lora import default_targets

    bb = _Depthwise()
    assert default_targets(bb) == ["expand", "proj"]
    model = TransferModel(bb, create_head("linear", 6, 3))
    LoRA(r=4).prepare_model(model)  # r=4 with 8 groups: PEFT would refuse the depthwise layer
    with torch.no_grad():
        for n, p in model.backbone.named_parameters():
            if "lora_B" in n:
                p.normal_()
    model.eval()
    x = torch.randn(2, 1, 5, 5)
    with torch.no_grad():
        before = model(x).logits
        merge_lora(model)
        assert torch.allclose(model(x).logits, before, atol=1e-5)


def test_lora_update_is_scaled_by_alpha_over_r():
    """Hu et al. (2022): h = W x + (alpha / r) B A x; merged, W' = W + (alpha / r) B A."""

    class One(torch.nn.Module):
        num_features, input_kind = 3, "vector"

        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)

        def stages(self):
            return [self.fc]

        def forward(self, x):
            return self.fc(x)

        features = forward

    torch.manual_seed(0)
    model = TransferModel(One(), create_head("linear", 3, 2))
    W, b = model.backbone.fc.weight.detach().clone(), model.backbone.fc.bias.detach().clone()
    LoRA(r=2, alpha=6.0).prepare_model(model)
    fc = model.backbone.fc
    A, B = torch.randn(2, 4), torch.randn(3, 2)
    with torch.no_grad():
        fc.lora_A["default"].weight.copy_(A)
        fc.lora_B["default"].weight.copy_(B)
    x = torch.randn(5, 4)
    expected = x @ (W + 3.0 * B @ A).t() + b  # alpha / r = 6 / 2
    with torch.no_grad():
        torch.testing.assert_close(model.backbone.features(x), expected)
        merge_lora(model)
        torch.testing.assert_close(fc.base_layer.weight, W + 3.0 * B @ A)
        torch.testing.assert_close(model.backbone.features(x), expected)
