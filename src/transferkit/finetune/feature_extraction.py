"""Feature extraction: a frozen backbone, its features computed once and cached, a head trained on them."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from transferkit.data.datasets import ArrayDataset, length_order
from transferkit.errors import TransferkitError
from transferkit.strategy import Phase, Strategy, head_only_phase
from transferkit.model import TransferModel


@torch.no_grad()
def extract_features(model: TransferModel, dataset: Dataset, batch_size: int = 256) -> ArrayDataset:
    """Run the backbone once over ``dataset`` in eval mode; returns features and targets (of the
    dataset's task type) on the CPU.

    Shape:
        returns ``ArrayDataset(x=[N, D], y=[N])`` (``y`` ``[N, C]`` for multi-hot or several values).
    """
    was_training = model.backbone.training
    model.backbone.eval()
    device = model.backbone.device
    ordered, order = length_order(dataset)
    feats, labels = [], []
    for x, y in DataLoader(ordered, batch_size=batch_size, shuffle=False):
        x = x.to(device) if isinstance(x, torch.Tensor) else x
        feats.append(model.backbone.features(x).float().cpu())
        labels.append(torch.as_tensor(y))
    model.backbone.train(was_training)
    inverse = torch.as_tensor(np.argsort(order))
    return ArrayDataset(torch.cat(feats)[inverse], torch.cat(labels)[inverse].numpy(),
                        name=f"{getattr(dataset, 'name', 'data')}:features", task=getattr(dataset, "task", "classification"))


# torchvision transforms that draw something at random on every call (those named Random* too)
RANDOM_TRANSFORMS = {"ColorJitter", "RandAugment", "AutoAugment", "TrivialAugmentWide", "AugMix", "GaussianBlur",
                     "ElasticTransform", "RandomErasing"}


def _transforms(t) -> list:
    """A transform and, for compositions (``Compose``, ``RandomApply``, ``RandomChoice``), its parts."""
    parts = getattr(t, "transforms", None)
    return [t] + [p for part in (parts if isinstance(parts, (list, tuple)) else []) for p in _transforms(part)]


def random_transform(dataset: Dataset) -> str | None:
    """The name of a random transform the dataset applies to each item (torchvision's ``Random*``,
    ``ColorJitter``, ``RandAugment`` ...), looking through views (``.base``, ``.dataset``), or None."""
    for _ in range(8):
        if dataset is None:
            break
        for t in _transforms(getattr(dataset, "transform", None)):
            name = type(t).__name__
            if name.startswith("Random") or name in RANDOM_TRANSFORMS:
                return name
        dataset = getattr(dataset, "base", None) or getattr(dataset, "dataset", None)
    return None


class FeatureExtraction(Strategy):
    """Train only the head on frozen source features (Donahue et al., 2014, DeCAF).

    Args:
        cache: compute the backbone's features once and train the head on the cache
            (False recomputes them every batch; same result, much slower). A dataset with a
            random transform (augmentation) cannot be cached -- the cache would freeze one draw of
            it -- and is refused; train it with ``cache: false``.
    """

    name = "feature_extraction"

    def __init__(self, cache: bool = True) -> None:
        super().__init__()
        self.cache = bool(cache)

    def phases(self, model, epochs, lr):
        return [head_only_phase(model, epochs, lr, name="head", precomputed=self.cache)]

    def prepare_data(self, model: TransferModel, dataset: Dataset, phase: Phase) -> Dataset:
        if not phase.precomputed:
            return dataset
        drawn = random_transform(dataset)
        if drawn is not None:
            raise TransferkitError(f"feature_extraction: the data '{getattr(dataset, 'name', type(dataset).__name__)}' "
                                   f"applies the random transform {drawn}, which cached features would freeze at one "
                                   "draw; set the strategy's cache to false or remove the random transform.")
        return extract_features(model, dataset)
