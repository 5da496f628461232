"""Meta-learning: N-way K-shot episodes and the maths of MAML, first-order MAML, ANIL, Meta-SGD,
Reptile and Prototypical Networks as pure ``torch.func`` functions."""

from transferkit.meta.episodes import Episode, EpisodeSampler, check_disjoint, split_classes
from transferkit.meta.functional import (
    adapt,
    adapt_batch,
    maml_loss,
    proto_logits,
    proto_loss,
    prototypes,
    reptile_epsilon,
    reptile_update,
    task_loss,
)

__all__ = ["Episode", "EpisodeSampler", "adapt", "adapt_batch", "check_disjoint", "maml_loss", "proto_logits",
           "proto_loss", "prototypes", "reptile_epsilon", "reptile_update", "split_classes", "task_loss"]
