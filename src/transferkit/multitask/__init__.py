"""Multi-task learning: loss weighters and gradient aggregators (work in progress: the
architectures, the training loop integration and the CLI come next)."""

from transferkit.multitask.functional import cagrad, imtl_g, mgda, min_norm_weights, pcgrad
from transferkit.multitask.weighters import DWA, WEIGHTERS, Equal, Fixed, RandomWeights, Uncertainty

__all__ = ["pcgrad", "mgda", "min_norm_weights", "cagrad", "imtl_g", "WEIGHTERS", "Equal", "Fixed", "Uncertainty",
           "RandomWeights", "DWA"]
