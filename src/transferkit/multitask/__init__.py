"""Multi-task learning: architectures (hard sharing, MMoE, cross-stitch), loss weighters, gradient aggregators,
per-task gradients in one batched backward, multi-task data (same inputs, or several datasets in mixed or
alternating batches) and ``transferkit multitask`` (run.py)."""

from transferkit.multitask.functional import cagrad, imtl_g, mgda, min_norm_weights, pcgrad
from transferkit.multitask.gradients import aggregated_backward, representation_gradients, shared_gradients, shared_gram
from transferkit.multitask.models import MMoE, CrossStitch, HardSharing, MultiOutput
from transferkit.multitask.weighters import DWA, WEIGHTERS, Equal, Fixed, GradNorm, RandomWeights, Uncertainty, create_weighter

__all__ = ["aggregated_backward", "representation_gradients", "shared_gradients", "shared_gram", "MMoE", "CrossStitch", "HardSharing",
           "MultiOutput", "pcgrad", "mgda", "min_norm_weights", "cagrad", "imtl_g", "WEIGHTERS", "Equal", "Fixed", "Uncertainty",
           "RandomWeights", "DWA", "GradNorm", "create_weighter"]
