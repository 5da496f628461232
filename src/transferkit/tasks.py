"""Task types: what a head predicts, its loss, its metrics and the targets it accepts.

A task type is a small pure object. The trainer takes the loss from it, evaluation the metrics,
``predict`` the prediction, and the data are checked against it before any training:

========================  ===================  ============================  ===============  ==============
``model.task``            targets              loss                          metrics          monitored
========================  ===================  ============================  ===============  ==============
``classification``        int64 ``[N]``        cross-entropy                 accuracy,        val/accuracy
                                                                             macro_f1         (max)
``multilabel``            float ``[N, C]``     binary cross-entropy          mAP, micro_f1    val/mAP (max)
                          multi-hot            with logits
``regression``            float ``[N]`` or     MSE (``loss: mse``) or L1     mae, mse, r2     val/mae (min)
                          ``[N, k]``           (``loss: l1``)
========================  ===================  ============================  ===============  ==============

Every type also reports ``loss``. A new type is a ``TaskType`` subclass and one ``TASKS.register`` line.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from transferkit.errors import TransferkitError
from transferkit.metrics import accuracy
from transferkit.metrics.tasks import macro_f1, mae, mean_average_precision, micro_f1, r2
from transferkit.registry import Registry

# metric names (after the last "/") for which smaller is better: errors, and the label-free selection
# scores entropy, IWV and DEV (risks)
LOWER_IS_BETTER = ("loss", "mae", "mse", "entropy", "iwv", "dev")


def metric_mode(monitor: str) -> str:
    """``"min"`` for a loss or an error (``val/loss``, ``val/mae``, ``val/left/mse``), else ``"max"``."""
    return "min" if monitor.rsplit("/", 1)[-1] in LOWER_IS_BETTER else "max"


def labelled(y: torch.Tensor) -> torch.Tensor:
    """The rows that carry a label (multi-task data marks a missing class with -1 and a missing
    value or multi-hot row with NaN). Shape: ``[N]`` bool."""
    if not y.is_floating_point():
        return y >= 0 if y.ndim == 1 else (y >= 0).all(-1)
    return ~torch.isnan(y).reshape(len(y), -1).any(1)


def _numpy(targets) -> np.ndarray:
    return targets.detach().cpu().numpy() if isinstance(targets, torch.Tensor) else np.asarray(targets)


def _first_bad_row(bad: np.ndarray) -> str:
    rows = np.flatnonzero(bad.reshape(len(bad), -1).any(1))
    return f"{len(rows)} row{'s' if len(rows) > 1 else ''} (first: row {int(rows[0])})"


def _check_finite(y: np.ndarray, where: str, fix: str) -> None:
    if y.size and np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise TransferkitError(f"{where} has NaN or infinite targets in {_first_bad_row(~np.isfinite(y))}; {fix}.")


class TaskType:
    """What a head predicts. Subclasses set ``name``, ``metric`` (monitored by default) and
    ``mode`` and implement the methods below; they hold no tensors and never change."""

    name: str = ""
    metric: str = ""
    score: str = ""  # a metric where higher is better, 1 at best: the entries of a continual score matrix
    mode: str = "max"

    @property
    def monitor(self) -> str:
        """The validation metric that early stopping and the best checkpoint follow by default."""
        return f"val/{self.metric}"

    def outputs(self, targets: torch.Tensor | np.ndarray) -> int:
        """The head's width for these (checked) targets."""
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean training loss of a batch."""
        raise NotImplementedError

    def metrics(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """``{"loss": ..., <metric>: ...}`` over a whole evaluation set."""
        raise NotImplementedError

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """What ``Run.predict`` returns: probabilities, or the predicted values."""
        raise NotImplementedError

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        """Class indices ``[N]``, a 0/1 matrix ``[N, C]``, or values."""
        raise NotImplementedError

    def check_targets(self, targets, n_outputs: int | None, where: str) -> None:
        """Raise one ``TransferkitError`` sentence naming ``where`` (a file, array or column) and the
        fix when ``targets`` do not suit this task (or a head of ``n_outputs``; None: not known yet)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


TASKS: Registry[type[TaskType]] = Registry("task")


@TASKS.register("classification", help="Single-label classification: cross-entropy; accuracy and macro-F1.")
class Classification(TaskType):
    """One class out of C per example: softmax cross-entropy; accuracy and macro-F1.

    Shape:
        logits: ``[N, C]``; targets: ``[N]`` int64 class indices.
    """

    name, metric, mode, score = "classification", "accuracy", "max", "accuracy"

    def outputs(self, targets) -> int:
        y = _numpy(targets)
        return int(y.max()) + 1 if y.size else 0

    def loss(self, logits, targets):
        return F.cross_entropy(logits, targets)

    def metrics(self, logits, targets):
        targets = targets.long()
        return {"loss": float(F.cross_entropy(logits.float(), targets)), "accuracy": accuracy(logits, targets),
                "macro_f1": macro_f1(logits.argmax(-1), targets)}

    def scores(self, logits):
        return torch.softmax(logits, -1)

    def predict(self, logits):
        return logits.argmax(-1)

    def check_targets(self, targets, n_outputs, where):
        y = _numpy(targets)
        if y.ndim != 1:
            raise TransferkitError(f"{where} holds targets of shape {tuple(y.shape)}, but model.task 'classification' "
                                   "needs one class index per example; give a 1-d array of labels, or set model.task "
                                   "to 'multilabel' for multi-hot rows.")
        if y.size and np.issubdtype(y.dtype, np.floating):
            _check_finite(y, where, "drop those rows or give them a class index")
            frac = y[y != np.round(y)]
            if frac.size:
                raise TransferkitError(f"{where} holds float targets such as {float(frac[0]):g}, but model.task "
                                       "'classification' needs class indices 0..C-1; give integer class labels, or set "
                                       "model.task to 'regression' to predict the values.")
        elif y.size and not np.issubdtype(y.dtype, np.integer):
            raise TransferkitError(f"{where} holds {y.dtype} targets, but model.task 'classification' needs class "
                                   "indices 0..C-1; map the classes to integers.")
        if y.size and y.min() < 0:
            raise TransferkitError(f"{where} has label {int(y.min())}, but classes must be 0..C-1; map the classes "
                                   "to 0..C-1.")
        if n_outputs is None or not y.size:
            return
        top = int(y.max())
        if top >= n_outputs:
            raise TransferkitError(f"{where} has label {top} but the head has {n_outputs} classes (0..{n_outputs - 1}); "
                                   f"set model.num_classes to {top + 1} or fix the labels.")
        if n_outputs < 2:
            raise TransferkitError(f"{where} holds a single class, but a classifier needs at least 2; check the "
                                   "labels, or set model.num_classes.")


@TASKS.register("multilabel", help="Multi-label: binary cross-entropy with logits; mAP and micro-F1 at 0.5.")
class Multilabel(TaskType):
    """Any subset of C labels per example (a multi-hot row): a sigmoid and binary cross-entropy per
    label; mean average precision (macro, as scikit-learn) and micro-F1 of ``sigmoid > 0.5``.

    Shape:
        logits: ``[N, C]``; targets: ``[N, C]`` float32 in {0, 1}.
    """

    name, metric, mode, score = "multilabel", "mAP", "max", "mAP"

    def outputs(self, targets) -> int:
        return int(_numpy(targets).shape[1])

    def loss(self, logits, targets):
        return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))

    def metrics(self, logits, targets):
        logits, targets = logits.float(), targets.float()
        return {"loss": float(F.binary_cross_entropy_with_logits(logits, targets)),
                "mAP": mean_average_precision(logits, targets), "micro_f1": micro_f1(self.predict(logits), targets)}

    def scores(self, logits):
        return torch.sigmoid(logits)

    def predict(self, logits):
        return (logits > 0).long()  # sigmoid(z) > 0.5 exactly when z > 0

    def check_targets(self, targets, n_outputs, where):
        y = _numpy(targets)
        if y.ndim != 2:
            raise TransferkitError(f"{where} holds targets of shape {tuple(y.shape)}, but model.task 'multilabel' needs "
                                   "one multi-hot row of C entries (0 or 1) per example; give an [N, C] array, or set "
                                   "model.task to 'classification' for one class index per example.")
        _check_finite(y, where, "give every row 0 or 1 for each class")
        bad = (y != 0) & (y != 1)
        if bad.any():
            row = int(np.flatnonzero(bad.any(1))[0])
            raise TransferkitError(f"{where} has multi-hot values other than 0 and 1 ({float(y[bad][0]):g} in row {row}); "
                                   "give 0 or 1 for every class.")
        if n_outputs is not None and y.shape[1] != n_outputs:
            raise TransferkitError(f"{where} has multi-hot rows of width {y.shape[1]}, but the model has {n_outputs} "
                                   f"classes; give every row {n_outputs} entries (0 or 1), or set model.num_classes "
                                   f"to {y.shape[1]}.")


@TASKS.register("regression", help="Regression: MSE or L1 loss (task_args: {loss: l1}); MAE, MSE and R².")
class Regression(TaskType):
    """Real values, one or several per example: mean squared error (``loss="mse"``) or mean
    absolute error (``loss="l1"``) on the raw outputs; metrics MAE, MSE and R².

    Args:
        loss: ``"mse"`` or ``"l1"``.

    Shape:
        logits: ``[N, k]``; targets: ``[N]`` (k = 1) or ``[N, k]`` float32.
    """

    name, metric, mode, score = "regression", "mae", "min", "r2"

    def __init__(self, loss: str = "mse") -> None:
        if loss not in ("mse", "l1"):
            raise TransferkitError(f"Task 'regression': 'loss' must be 'mse' or 'l1'; got {loss!r}.")
        self.loss_name = loss

    def outputs(self, targets) -> int:
        y = _numpy(targets)
        return 1 if y.ndim == 1 else int(y.shape[1])

    @staticmethod
    def _values(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return logits.squeeze(-1) if targets.ndim == 1 and logits.ndim == 2 else logits

    def loss(self, logits, targets):
        z = self._values(logits, targets)
        targets = targets.to(z.dtype)
        return F.mse_loss(z, targets) if self.loss_name == "mse" else F.l1_loss(z, targets)

    def metrics(self, logits, targets):
        z, y = self._values(logits.float(), targets).float(), targets.float()
        err = mae(z, y)
        mse = float(((z.double() - y.double()) ** 2).mean())
        return {"loss": mse if self.loss_name == "mse" else err, "mae": err, "mse": mse, "r2": r2(z, y)}

    def scores(self, logits):
        return logits

    def predict(self, logits):
        return logits.squeeze(-1) if logits.ndim == 2 and logits.shape[1] == 1 else logits

    def check_targets(self, targets, n_outputs, where):
        y = _numpy(targets)
        if y.size and not np.issubdtype(y.dtype, np.floating):
            raise TransferkitError(f"{where} holds {y.dtype} targets (class indices?), but model.task 'regression' "
                                   "needs float values; store the targets as floats (y.astype('float32')), or set "
                                   "model.task to 'classification'.")
        if y.ndim not in (1, 2):
            raise TransferkitError(f"{where} holds targets of shape {tuple(y.shape)}, but model.task 'regression' needs "
                                   "one value ([N]) or one row of values ([N, k]) per example; reshape them.")
        _check_finite(y, where, "drop those rows or fill in their values")
        if n_outputs is not None and self.outputs(y) != n_outputs:
            raise TransferkitError(f"{where} has {self.outputs(y)} target column(s), but the model predicts "
                                   f"{n_outputs}; give every example {n_outputs} value(s), or set model.num_classes "
                                   f"to {self.outputs(y)}.")

    def __repr__(self) -> str:
        return f"Regression(loss={self.loss_name!r})"


def create_task(name: str = "classification", **args) -> TaskType:
    """A task type by name, with its arguments (did-you-mean on unknown names and arguments).

    Example:
        >>> create_task("regression", loss="l1").loss(torch.zeros(2, 1), torch.tensor([1.0, -1.0]))
        tensor(1.)
    """
    return TASKS.build(name, **args)


def task_for(tasks: dict[str, TaskType], head: str | None) -> TaskType:
    """The task type of ``head`` (None: the model's first head)."""
    return tasks[head] if head is not None else next(iter(tasks.values()))
