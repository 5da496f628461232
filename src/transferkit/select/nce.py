"""NCE: the negative conditional entropy of the target labels given hard source labels.

Tran et al., "Transferability and Hardness of Supervised Classification Tasks", ICCV 2019.
"""

from __future__ import annotations

import numpy as np
from scipy.special import xlogy

from transferkit.select import checks


def nce(source_labels, labels) -> float:
    """NCE (Tran et al., ICCV 2019): ``-H(Y | Z) = sum_z P(z) sum_y P(y | z) log P(y | z)`` from the
    empirical joint of the source model's hard labels z (e.g. the arg-max of its outputs) and the
    target labels y.

    Natural log (nats); NCE <= 0, 0 when the source label determines the target label, and higher
    is better. Source classes that never occur are left out (they carry no mass); ``0 log 0 = 0``
    (the reference code adds 1e-20 inside the log instead, a difference below 1e-18).

    Args:
        source_labels: hard source-class indices >= 0 (absent classes allowed).
        labels: target class indices 0..C-1.

    Shape:
        source_labels: ``[N]``; labels: ``[N]``.
    """
    y, num = checks.labels(labels, "NCE")
    z = checks.source_labels(source_labels, "NCE", len(y))
    _, z = np.unique(z, return_inverse=True)  # only the source classes that occur
    joint = np.bincount(z * num + y, minlength=(z.max() + 1) * num).reshape(-1, num) / len(y)  # P(z, y)
    p_z = joint.sum(1, keepdims=True)
    return float(xlogy(joint, joint / p_z).sum())
