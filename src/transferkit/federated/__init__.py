"""Federated transfer learning with Flower: clients with label-skewed shares of the target data start from
one source backbone and exchange only the tensors their strategy trains (head, adapters or LoRA).

``split`` (Dirichlet label skew), ``arrays`` (what is exchanged, its bytes) and ``proximal`` (FedProx's
client term) need no Flower; ``client`` / ``server`` build Flower's apps; ``run`` is the command. Flower
is imported only when a run starts.
"""

from transferkit.federated.proximal import Proximal, proximal_penalty
from transferkit.federated.split import dirichlet_label_split, label_counts, label_skew

__all__ = ["Proximal", "dirichlet_label_split", "label_counts", "label_skew", "proximal_penalty", "run_federated"]


def run_federated(*args, **kwargs):
    """See ``transferkit.federated.run.run_federated``."""
    from transferkit.federated.run import run_federated as run

    return run(*args, **kwargs)
