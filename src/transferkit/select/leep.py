"""LEEP: the log expected empirical prediction of a source model's softmax outputs.

Nguyen et al., "LEEP: A New Measure to Evaluate Transferability of Learned Representations",
ICML 2020.
"""

from __future__ import annotations

import numpy as np

from transferkit.select import checks


def leep(probs, labels) -> float:
    """LEEP (Nguyen et al., ICML 2020): the mean log-likelihood of the target labels under the
    "empirical predictor" ``sum_z theta_i(z) P(y | z)``, where ``P(y | z)`` is the empirical conditional
    of the target label given the source class, from ``P(y, z) = 1/N sum_{i: y_i = y} theta_i(z)``.

    Natural log; LEEP <= 0 and higher is better. A source class that receives no probability mass on
    the target data gets no ``P(y | z)`` (the reference code returns NaN then); it contributes
    nothing either way. With one-hot ``probs`` LEEP equals NCE of the hard source labels.

    Args:
        probs: the source model's class probabilities (softmax outputs) on the target examples.
        labels: target class indices 0..C-1.

    Shape:
        probs: ``[N, C_s]``, rows summing to 1; labels: ``[N]``.
    """
    y, num = checks.labels(labels, "LEEP")
    theta = checks.probabilities(probs, "LEEP", len(y))
    onehot = np.eye(num)[y]  # [N, C]
    joint = onehot.T @ theta / len(y)  # P(y, z), [C, C_s]
    mass = joint.sum(0, keepdims=True)  # P(z)
    cond = np.divide(joint, mass, out=np.zeros_like(joint), where=mass > 0)  # P(y | z)
    eep = (theta @ cond.T)[np.arange(len(y)), y]  # the empirical predictor's probability of y_i
    return float(np.log(eep).mean())
