"""Multi-task learning: architectures (hard sharing, MMoE, cross-stitch), loss weighters, gradient aggregators
and per-task gradients in one batched backward. Still to come: the training-loop integration, `transferkit multitask` and its report."""

from transferkit.multitask.functional import cagrad, imtl_g, mgda, min_norm_weights, pcgrad
from transferkit.multitask.gradients import aggregated_backward, representation_gradients, shared_gradients
from transferkit.multitask.models import MMoE, CrossStitch, HardSharing, MultiOutput
from transferkit.multitask.weighters import DWA, WEIGHTERS, Equal, Fixed, GradNorm, RandomWeights, Uncertainty

__all__ = ["aggregated_backward", "representation_gradients", "shared_gradients", "MMoE", "CrossStitch", "HardSharing",
           "MultiOutput", "pcgrad", "mgda", "min_norm_weights", "cagrad", "imtl_g", "WEIGHTERS", "Equal", "Fixed", "Uncertainty",
           "RandomWeights", "DWA", "GradNorm"]
