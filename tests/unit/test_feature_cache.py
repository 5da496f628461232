import numpy as np
import torch

from transferkit.backbones import create_backbone
from transferkit.data import TextDataset
from transferkit.finetune import extract_features
from transferkit.heads import create_head
from transferkit.model import TransferModel


def test_text_features_are_cached_in_the_original_order():
    texts = ["a long review of a kettle that boils water quickly and quietly", "bad", "fine blender",
             "the toaster burned everything", "ok", "works as described, would buy again"]
    ds = TextDataset(texts, np.arange(6) % 2)
    model = TransferModel(create_backbone("hf_text"), create_head("linear", 384, 2))
    cached = extract_features(model, ds, batch_size=4)  # length-sorted batches internally
    model.eval()
    with torch.no_grad():
        one_by_one = torch.cat([model.backbone.features([t]) for t in texts])
    assert torch.allclose(cached.x, one_by_one, atol=1e-5)
    assert cached.targets.tolist() == [0, 1, 0, 1, 0, 1]
    assert model.backbone.training is False  # the mode it was in before
