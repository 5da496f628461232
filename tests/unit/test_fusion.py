import pytest
import torch
from safetensors.torch import save_file

from transferkit.backbones import create_backbone
from transferkit.engine.trainer import Trainer
from transferkit.errors import TransferkitError
from transferkit.finetune import Fusion
from tests.unit.test_strategies import fusion_model, settings, tiny_data, tiny_model


def test_fusion_weights_sum_to_one_and_sources_stay_frozen():
    model = fusion_model()
    before = {k: v.clone() for k, v in model.backbone.sources.state_dict().items()}
    Trainer(settings(epochs=3, lr=0.1), progress=False).fit(model, Fusion(), tiny_data())
    w = model.backbone.fusion_weights().detach()
    assert float(w.sum()) == pytest.approx(1.0) and (w >= 0).all()
    assert not torch.allclose(w, torch.full_like(w, 0.5))  # the mix was learned
    for k, v in model.backbone.sources.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_fusion_from_config_with_weight_files(tmp_path):
    paths = []
    for i, width in enumerate((4, 8)):
        bb = create_backbone("small_cnn", in_channels=1, width=width)
        paths.append(tmp_path / f"s{i}.safetensors")
        save_file(bb.state_dict(), paths[-1])
    fused = create_backbone("fusion", sources=[{"backbone": "small_cnn", "weights": str(p),
                                                "args": {"in_channels": 1, "width": w}}
                                               for p, w in zip(paths, (4, 8))])
    assert fused(torch.randn(2, 1, 16, 16)).shape == (2, 128)


def test_fusion_errors_name_the_problem():
    with pytest.raises(TransferkitError, match="at least two"):
        create_backbone("fusion", sources=[{"backbone": "mlp"}])
    with pytest.raises(TransferkitError, match="source 1 must be a mapping"):
        create_backbone("fusion", sources=[{"backbone": "mlp"}, {"weights": "x"}])
    with pytest.raises(TransferkitError, match="needs model.backbone: fusion"):
        Fusion().phases(tiny_model(), 1, 0.1)
