"""The meta-learning methods as small modules around a model: one outer update per meta-batch and the
accuracy on a new episode after adapting to its support set. The maths is in :mod:`.functional`.

- ``maml`` (Finn et al., 2017), ``fomaml`` (its first-order form), ``anil`` (Raghu et al., 2020: the
  inner loop on the head only), optionally with Meta-SGD's learned step sizes (Li et al., 2017);
- ``reptile`` (Nichol et al., 2018): adapt without a graph, move towards the adapted weights;
- ``protonet`` (Snell et al., 2017): the backbone's features and distances to class prototypes;
- ``finetune`` (Chen et al., 2019, "A Closer Look at Few-shot Classification", Baseline): ordinary
  classification over the meta-train classes, then a new linear head fitted on each support set's
  frozen features.

A learner is an ``nn.Module`` holding the model and its own learned state (Meta-SGD's rates), so
both are checkpointed together.

Batch norm: the inner-loop methods (``maml``, ``fomaml``, ``anil``, ``reptile``) normalise with the
statistics of each batch they see, in training and evaluation (see :func:`batch_statistics_only`), as
MAML's and Reptile's reference code do (the "transductive" setting of Nichol et al., Sec. 6: a query
batch is normalised with its own statistics). ``protonet`` and ``finetune`` keep running statistics
and evaluate in eval mode, so a query's prediction never depends on the other queries.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad

from transferkit.errors import TransferkitError
from transferkit.meta.episodes import Episode, EpisodeSampler
from transferkit.meta.functional import (adapt, adapt_batch, logits_of, maml_loss, over_tasks, proto_logits,
                                         proto_loss, prototypes, reptile_update, task_loss)

GRADIENT_METHODS = ("maml", "fomaml", "anil")


def batch_statistics_only(model: nn.Module) -> nn.Module:
    """Make every batch-norm layer normalise with the statistics of the batch it sees, in training
    and evaluation alike (no running statistics), as the inner loop of :func:`.functional.adapt` needs."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False
            m.running_mean = m.running_var = m.num_batches_tracked = None
    return model


def class_batch(sampler: EpisodeSampler, i: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch ``i`` of ordinary classification over every (class, rotation) of ``sampler``, labelled by
    its index in ``sampler.classes``: a pure function of ``(sampler.seed, i)``, as episodes are."""
    rng = np.random.default_rng([sampler.seed, i, 1])
    picks = rng.integers(len(sampler.classes), size=size)
    xs = []
    for j in picks:
        c, r = sampler.classes[j]
        xs.append(sampler._item(int(rng.choice(sampler.index[c])), r))
    return torch.stack(xs), torch.as_tensor(picks, dtype=torch.long)


def fit_head(features: torch.Tensor, labels: torch.Tensor, n_way: int, steps: int, lr: float) -> tuple:
    """A new linear head ``(W, b)`` from zeros, ``steps`` steps of full-batch gradient descent on the
    mean cross-entropy of the (frozen) support features. The gradient is written out (softmax minus
    one-hot, times the features), which is exact for a linear head and keeps autograd out of a
    hundred tiny steps. Shape: features ``[S, D]``; returns ``W [n_way, D]``, ``b [n_way]``."""
    w, b = features.new_zeros(n_way, features.shape[1]), features.new_zeros(n_way)
    onehot = F.one_hot(labels, n_way).to(features.dtype)
    for _ in range(steps):
        err = (torch.softmax(features @ w.T + b, dim=1) - onehot) / len(features)  # d loss / d logits
        w, b = w - lr * (err.T @ features), b - lr * err.sum(0)
    return w, b


class MetaLearner(nn.Module):
    """One method of the module docstring around ``model`` (a ``TransferModel``: ``backbone.features``
    and one head of ``n_way`` outputs, or of every meta-train class for ``finetune``)."""

    def __init__(self, model: nn.Module, method: str, n_way: int, inner_steps: int = 1,
                 eval_inner_steps: int | None = None, inner_lr: float = 0.4, learn_inner_lr: bool = False,
                 metric: str = "euclidean", vectorize: bool = True, zero_head: bool = False) -> None:
        super().__init__()
        inner_loop = method not in ("protonet", "finetune")
        self.model = batch_statistics_only(model) if inner_loop else model
        self.method, self.n_way, self.metric = method, n_way, metric
        self.inner_steps, self.eval_steps = inner_steps, eval_inner_steps or inner_steps
        self.inner_lr, self.vectorize, self.zero_head = inner_lr, vectorize, zero_head and inner_loop
        names = [n for n, _ in model.named_parameters()]
        self.trainable = [n for n in names if n.startswith("heads.")] if method == "anil" else None
        self.rates = nn.ParameterDict({n.replace(".", "__"): nn.Parameter(torch.full_like(p, inner_lr))
                                       for n, p in model.named_parameters() if n in (self.trainable or names)}
                                      ) if learn_inner_lr else None

    def _params(self) -> dict:
        """The parameters the inner loop starts from: the model's, with the head at zero under the
        zeroing trick (Kao et al., 2022, "MAML is a Noisy Contrastive Learner in Classification": the
        final linear layer is reset to zero after every outer update, so every task starts from a head
        that favours no class; the head then receives no outer update)."""
        params = dict(self.model.named_parameters())
        if self.zero_head:
            params |= {n: torch.zeros_like(p) for n, p in params.items() if n.startswith("heads.")}
        return params

    def _lr(self):
        return {k.replace("__", "."): v for k, v in self.rates.items()} if self.rates is not None else self.inner_lr

    def outer_loss(self, batch) -> torch.Tensor:
        """The loss whose gradient is the outer update: a meta-batch of episodes (``[T, ...]``
        tensors), or for ``finetune`` a classification batch ``(x, y)``."""
        if self.method == "finetune":
            x, y = batch
            return F.cross_entropy(self.model(x).logits, y)
        if self.method == "protonet":
            return torch.stack([self._proto_loss(sx, sy, qx, qy) for sx, sy, qx, qy in
                                zip(batch.support_x, batch.support_y, batch.query_x, batch.query_y)]).mean()
        if self.method == "anil":
            return self._anil_loss(batch)
        return maml_loss(self.model, self._params(), batch.support_x, batch.support_y,
                         batch.query_x, batch.query_y, self.inner_steps, self._lr(),
                         first_order=self.method == "fomaml", trainable=self.trainable, vectorize=self.vectorize)

    def _head_view(self, params: dict, lr):
        """ANIL's inner loop sees only the head: the head module, its parameters and step sizes (names
        without the ``heads.<task>.`` prefix), and a function giving the backbone's features with
        ``params``. The backbone does not change in the inner loop, so its features are computed once
        per task rather than at every inner step; the meta-gradient is the same."""
        prefix = f"heads.{self.model.default_task}."
        head = {n[len(prefix):]: p for n, p in params.items() if n.startswith(prefix)}
        body = {n[len("backbone."):]: p for n, p in params.items() if n.startswith("backbone.")}
        lr = {n[len(prefix):]: v for n, v in lr.items()} if isinstance(lr, dict) else lr
        return self.model.heads[self.model.default_task], head, lr, lambda x: functional_call(self.model.backbone, body, (x,))

    def _anil_loss(self, batch: Episode) -> torch.Tensor:
        """ANIL's meta-objective (Raghu et al., 2020): MAML's, with the inner loop on the head only."""
        module, head, lr, features = self._head_view(self._params(), self._lr())

        def one_task(sx, sy, qx, qy):
            fast = adapt(module, head, features(sx), sy, self.inner_steps, lr)
            return task_loss(module, fast, features(qx), qy)

        return over_tasks(one_task, self.vectorize)(batch.support_x, batch.support_y, batch.query_x,
                                                    batch.query_y).mean()

    def _proto_loss(self, sx, sy, qx, qy):
        f = self.model.backbone.features(torch.cat([sx, qx]))  # one pass over the episode
        return proto_loss(f[:len(sx)], sy, f[len(sx):], qy, int(sy.max()) + 1, self.metric)

    @torch.no_grad()
    def reptile_step(self, batch: Episode, epsilon: float) -> float:
        """Reptile's outer update in place; returns the mean query loss of the adapted weights."""
        params = {n: p.detach() for n, p in self._params().items()}
        adapted = adapt_batch(self.model, params, batch.support_x, batch.support_y, self.inner_steps, self.inner_lr,
                              vectorize=self.vectorize)
        loss = torch.stack([F.cross_entropy(logits_of(functional_call(
            self.model, {n: w[t] for n, w in adapted.items()}, (qx,))), qy)
            for t, (qx, qy) in enumerate(zip(batch.query_x, batch.query_y))]).mean()
        for n, p in reptile_update(params, adapted, epsilon).items():
            if not (self.zero_head and n.startswith("heads.")):
                self.model.get_parameter(n).copy_(p)
        return float(loss)

    def logits(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
        """The query logits ``[Q, N]`` after adapting to a support set of ``N`` classes labelled
        ``0..N-1`` (prototypes, a new head, or inner-loop steps); the model itself is not changed."""
        sx, sy, qx, n_way = support_x, support_y, query_x, int(support_y.max()) + 1
        missing = sorted(set(range(n_way)) - set(support_y.tolist()))
        if missing:
            raise TransferkitError(f"The support set labels classes 0..{n_way - 1} but has no example of class "
                                   f"{missing[0]}; label the support classes 0..N-1, each with at least one example.")
        if self.method not in ("protonet", "finetune") and n_way > self.n_way:
            raise TransferkitError(f"The support set has {n_way} classes, and this {self.method} model learned a head of "
                                   f"{self.n_way}; give at most {self.n_way} classes.")
        with torch.no_grad():
            if self.method == "protonet":
                f = self.model.backbone.features(torch.cat([sx, qx]))
                return proto_logits(f[len(sx):], prototypes(f[:len(sx)], sy, n_way), self.metric)
            if self.method == "finetune":
                f = self.model.backbone.features(torch.cat([sx, qx]))
                w, b = fit_head(f[:len(sx)], sy, n_way, self.eval_steps, self.inner_lr)
                return f[len(sx):] @ w.T + b
            # torch.func.grad differentiates inside no_grad
            lr = self._lr()
            lr = {n: v.detach() for n, v in lr.items()} if isinstance(lr, dict) else lr
            params = {n: p.detach() for n, p in self._params().items()}
            if self.method == "anil":
                module, head, lr, features = self._head_view(params, lr)
                fast = adapt(module, head, features(sx), sy, self.eval_steps, lr, first_order=True)
                return logits_of(functional_call(module, fast, (features(qx),)))[:, :n_way]
            fast = adapt(self.model, params, sx, sy, self.eval_steps, lr, first_order=True, trainable=self.trainable)
            return logits_of(functional_call(self.model, fast, (qx,)))[:, :n_way]

    def accuracy(self, ep: Episode) -> float:
        """The query accuracy on a new episode after adapting to its support set."""
        return float((self.logits(ep.support_x, ep.support_y, ep.query_x).argmax(1) == ep.query_y).float().mean())
