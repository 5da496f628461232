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


def _image_folder(root, n=6):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        (root / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8)).save(root / f"c{i % 2}" / f"{i}.png")
    return root


def test_features_are_not_cached_from_a_random_transform(tmp_path):
    """A cache would freeze one draw of the augmentation for every epoch: refused, with the way out."""
    import pytest
    from torchvision import transforms as T

    from transferkit.data.datasets import ImageFolderDataset
    from transferkit.engine.trainer import Trainer
    from transferkit.errors import TransferkitError
    from transferkit.finetune import FeatureExtraction
    from tests.unit.test_strategies import settings, tiny_model

    root = _image_folder(tmp_path / "imgs")
    flip = ImageFolderDataset(root, channels=1, transform=T.RandomHorizontalFlip())
    with pytest.raises(TransferkitError, match="random transform RandomHorizontalFlip.*cache to false"):
        Trainer(settings(epochs=1), progress=False).fit(tiny_model(), FeatureExtraction(), flip)
    history = Trainer(settings(epochs=1), progress=False).fit(tiny_model(), FeatureExtraction(cache=False), flip)
    assert len(history) == 1
    plain = ImageFolderDataset(root, channels=1, transform=T.Normalize([0.5], [0.5]))
    assert len(Trainer(settings(epochs=1), progress=False).fit(tiny_model(), FeatureExtraction(), plain)) == 1


def test_random_transforms_are_found_inside_compositions_and_views(tmp_path):
    from torchvision import transforms as T

    from transferkit.data.datasets import ImageFolderDataset, Subset
    from transferkit.finetune.feature_extraction import random_transform

    root = _image_folder(tmp_path / "imgs")
    jitter = ImageFolderDataset(root, channels=1, transform=T.Compose([T.Normalize([0.5], [0.5]), T.ColorJitter(0.5)]))
    assert random_transform(jitter) == "ColorJitter" and random_transform(Subset(jitter, np.arange(3))) == "ColorJitter"
    assert random_transform(torch.utils.data.Subset(jitter, [0, 1])) == "ColorJitter"
    assert random_transform(ImageFolderDataset(root, channels=1, transform=T.Normalize([0.5], [0.5]))) is None
