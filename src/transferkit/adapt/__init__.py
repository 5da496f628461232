"""Domain adaptation: learn a target domain from its unlabelled data.

Deep methods are ordinary strategies (registered with the fine-tuning ones, so they compose with
``"+"`` and run through ``train`` / ``compare``): each appends unlabelled target rows to every batch
(``base.DomainAdaptation``) and adds its alignment term. Their maths is in ``adapt.functional``.
Classic methods on feature vectors (scikit-learn estimators) are in ``adapt.shallow``.
"""

from __future__ import annotations

from transferkit.adapt.adversarial import CDAN, CDANE, DANN
from transferkit.adapt.alignment import DAN, MCC, DeepCORAL, EntropyMin
from transferkit.adapt.base import DomainAdaptation, unlabelled_parts, use_unlabelled
from transferkit.adapt.mcd import MCD

DEEP_METHODS = (DAN, DeepCORAL, DANN, CDAN, CDANE, MCD, EntropyMin, MCC)

__all__ = ["CDAN", "CDANE", "DAN", "DANN", "DEEP_METHODS", "DeepCORAL", "DomainAdaptation", "EntropyMin", "MCC", "MCD",
           "unlabelled_parts", "use_unlabelled"]
