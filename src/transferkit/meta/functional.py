"""The maths of meta-learning as pure functions of a model's parameters (``torch.func``).

Parameters travel as ``{name: tensor}`` dicts (``dict(model.named_parameters())``) and every forward
pass is ``torch.func.functional_call``, so the inner loop never copies or mutates the module: MAML's
meta-gradient is whatever ``torch.autograd`` (or an outer ``torch.func.grad``) finds by
differentiating through :func:`adapt`, and :func:`maml_loss` runs the tasks of a meta-batch at once
with ``torch.func.vmap``.

The module's buffers are used as they are. Batch norm in training mode must not track running
statistics (``track_running_stats=False``: each task's own batch statistics, as MAML's reference
code normalises), since the transforms refuse the in-place update of a captured buffer; in eval mode
it uses its stored statistics. Dropout runs under ``vmap(randomness="different")``: each task of a
meta-batch draws its own masks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from transferkit.errors import TransferkitError

Params = dict[str, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def logits_of(out) -> torch.Tensor:
    """The logits of a forward pass: ``out.logits`` for transferkit models (``Output``), else ``out``."""
    return out.logits if hasattr(out, "logits") else out


def task_loss(model: torch.nn.Module, params: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
              loss_fn: LossFn = F.cross_entropy) -> torch.Tensor:
    """``loss_fn(f(x; params), y)``: the model run with ``params`` in place of its own parameters.

    Shape:
        x: ``[B, ...]``; y: ``[B]``; returns a scalar.
    """
    return loss_fn(logits_of(functional_call(model, dict(params), (x,))), y)


def _check_batch_norm(model: torch.nn.Module) -> None:
    """Refuse batch norm that would update running statistics inside the transforms."""
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats:
            raise TransferkitError(f"Batch norm layer '{name}' updates running statistics in training mode, which the "
                             "inner loop cannot do; build it with track_running_stats=False or call model.eval().")


def _has_batch_norm(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _step_size(lr: float | Mapping[str, torch.Tensor], name: str):
    """The inner learning rate of one parameter: a number, or (Meta-SGD) its own learned tensor."""
    return lr[name] if isinstance(lr, Mapping) else lr


def adapt(model: torch.nn.Module, params: Mapping[str, torch.Tensor], support_x: torch.Tensor,
          support_y: torch.Tensor, steps: int, lr: float | Mapping[str, torch.Tensor], first_order: bool = False,
          trainable: Sequence[str] | None = None, loss_fn: LossFn = F.cross_entropy) -> Params:
    """The inner loop of MAML (Finn et al., 2017, Algorithm 2): ``steps`` steps of gradient descent on
    the support loss, ``theta' = theta - lr * grad L_support(theta)``, returning the adapted parameters.

    Every step is differentiable, so the gradient of a loss of the result w.r.t. ``params`` is the
    second-order MAML meta-gradient (it contains the inner Hessians). With ``first_order`` the inner
    gradients are detached, so ``d theta' / d theta`` is the identity and the meta-gradient is the
    query gradient at ``theta'`` (first-order MAML, FOMAML).

    ``lr`` may be a dict of tensors, one per trainable parameter (scalars or shaped like the
    parameter): Meta-SGD's learned per-parameter rates (Li et al., 2017:
    ``theta' = theta - alpha o grad L``, ``o`` elementwise); they receive meta-gradients like ``params`` do.

    ``trainable`` limits the inner loop to those parameter names (ANIL, Raghu et al., 2020: only the
    head's); the others are held at their initial values (the outer loop still trains them).

    Shape:
        support_x: ``[S, ...]``; support_y: ``[S]``; returns ``{name: tensor}`` with every name of
        ``params``.
    """
    _check_batch_norm(model)
    names = list(params) if trainable is None else list(trainable)
    unknown = [n for n in names if n not in params]
    if unknown:
        raise TransferkitError(f"adapt: 'trainable' names {unknown[0]!r}, which is not among the parameters; "
                         "use names from model.named_parameters().")
    fast = dict(params)

    def loss_of(sub: Params, fixed: Params) -> torch.Tensor:
        return task_loss(model, {**fixed, **sub}, support_x, support_y, loss_fn)

    for _ in range(steps):
        sub = {n: fast[n] for n in names}
        fixed = {n: v for n, v in fast.items() if n not in sub}
        grads = grad(loss_of)(sub, fixed)
        if first_order:
            grads = {n: g.detach() for n, g in grads.items()}
        fast.update({n: sub[n] - _step_size(lr, n) * grads[n] for n in names})
    return fast


def over_tasks(fn: Callable, vectorize: bool = True, randomness: str = "different") -> Callable:
    """``fn`` (of one task's tensors) mapped over the leading task dimension of its arguments:
    ``torch.func.vmap(fn)`` or, with ``vectorize=False``, a Python loop whose results are stacked
    (a tensor, or a dict of tensors). Both give the same values; which is faster depends on the model
    and the device (BENCHMARKS.md, "vmap against a loop")."""
    if vectorize:
        return vmap(fn, randomness=randomness)

    def loop(*args):
        outs = [fn(*(a[t] for a in args)) for t in range(len(args[0]))]
        if isinstance(outs[0], Mapping):
            return {k: torch.stack([o[k] for o in outs]) for k in outs[0]}
        return torch.stack(outs)

    return loop


def maml_loss(model: torch.nn.Module, params: Mapping[str, torch.Tensor], support_x: torch.Tensor,
              support_y: torch.Tensor, query_x: torch.Tensor, query_y: torch.Tensor, steps: int,
              lr: float | Mapping[str, torch.Tensor], first_order: bool = False,
              trainable: Sequence[str] | None = None, loss_fn: LossFn = F.cross_entropy,
              randomness: str = "different", vectorize: bool = True) -> torch.Tensor:
    """The MAML meta-objective (Finn et al., 2017, eq. 1 and Algorithm 2) of a meta-batch of T tasks:
    ``(1/T) sum_t L_query_t(adapt_t(theta))``, the tasks run at once with ``torch.func.vmap``.

    Its gradient w.r.t. ``params`` is the second-order MAML meta-gradient, or with ``first_order``
    FOMAML's (the Hessian term dropped); with ``trainable`` set to the head's names it is ANIL's;
    with ``lr`` a dict of tensors, its gradient w.r.t. them trains Meta-SGD's rates. See
    :func:`adapt` for the inner loop. ``randomness`` is ``vmap``'s: ``"different"`` (default) gives each
    task its own dropout masks; ``"error"`` refuses random operations. ``vectorize=False`` loops over
    the tasks instead (:func:`over_tasks`). Second-order MAML through batch norm always loops:
    ``vmap``'s batching rule of batch norm's backward pass gives wrong second derivatives
    (pytorch/functorch#534; the parameters before a batch-norm layer get gradients off by percents),
    while the first-order methods never differentiate through that backward pass.

    Shape:
        support_x: ``[T, S, ...]``; support_y: ``[T, S]``; query_x: ``[T, Q, ...]``;
        query_y: ``[T, Q]``; returns a scalar.
    """
    _check_batch_norm(model)
    params, lr = dict(params), (dict(lr) if isinstance(lr, Mapping) else lr)

    def one_task(sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor) -> torch.Tensor:
        fast = adapt(model, params, sx, sy, steps, lr, first_order, trainable, loss_fn)
        return task_loss(model, fast, qx, qy, loss_fn)

    vectorize = vectorize and (first_order or not _has_batch_norm(model))
    return over_tasks(one_task, vectorize, randomness)(support_x, support_y, query_x, query_y).mean()


def adapt_batch(model: torch.nn.Module, params: Mapping[str, torch.Tensor], support_x: torch.Tensor,
                support_y: torch.Tensor, steps: int, lr: float | Mapping[str, torch.Tensor],
                trainable: Sequence[str] | None = None, loss_fn: LossFn = F.cross_entropy,
                randomness: str = "different", vectorize: bool = True) -> Params:
    """The first-order inner loop of :func:`adapt` for each of T tasks at once (``vmap``), without
    a graph back to ``params``: Reptile's adapted weights (Nichol et al., 2018, Algorithm 2).
    ``randomness`` is ``vmap``'s (``"different"``: each task its own dropout masks); ``vectorize=False``
    loops over the tasks instead (:func:`over_tasks`).

    Shape:
        support_x: ``[T, S, ...]``; support_y: ``[T, S]``; returns ``{name: [T, *param.shape]}``.
    """
    params = {n: p.detach() for n, p in params.items()}
    lr = {n: v.detach() for n, v in lr.items()} if isinstance(lr, Mapping) else lr
    return over_tasks(lambda sx, sy: adapt(model, params, sx, sy, steps, lr, True, trainable, loss_fn),
                      vectorize, randomness)(support_x, support_y)


def reptile_update(params: Mapping[str, torch.Tensor], adapted: Mapping[str, torch.Tensor],
                   epsilon: float) -> Params:
    """Reptile's outer step (Nichol et al., 2018, Algorithm 2, batched version):
    ``theta <- theta + epsilon * (1/T) sum_t (W_t - theta)``, with ``W_t`` the weights adapted to task t.

    With one inner step of SGD at rate ``alpha``, ``W_t = theta - alpha grad L_t(theta)``, this is one
    SGD step on the joint loss ``sum_t L_t`` at rate ``epsilon * alpha / T`` (the paper notes that with
    one inner step Reptile is SGD on the expected loss).

    Shape:
        params: ``{name: tensor}``; adapted: ``{name: [T, *tensor.shape]}``; returns ``{name: tensor}``.
    """
    return {n: p + epsilon * (adapted[n] - p.unsqueeze(0)).mean(0) for n, p in params.items()}


def reptile_epsilon(i: int, iterations: int, start: float = 1.0, final: float = 0.0) -> float:
    """Reptile's outer step size at meta-iteration ``i`` (0-based) of ``iterations``, annealed linearly
    (Nichol et al., 2018, Sec. 7: epsilon from 1 to 0; openai/supervised-reptile's ``meta_step`` to
    ``meta_step_final``): ``epsilon_i = start + (final - start) * i / iterations``.

    A pure function of ``i``, so a resumed run takes the steps it would have taken.
    """
    return start + (final - start) * i / iterations


def prototypes(features: torch.Tensor, labels: torch.Tensor, n_way: int) -> torch.Tensor:
    """The class prototypes of Prototypical Networks (Snell et al., 2017, eq. 1): the mean embedded
    support point of each class, ``c_k = (1/|S_k|) sum_{(x_i, y_i) in S_k} f(x_i)``.

    Every class ``0..n_way-1`` must have at least one support point (an episode's do).

    Shape:
        features: ``[S, D]``; labels: ``[S]`` in ``0..n_way-1``; returns ``[n_way, D]``.
    """
    onehot = F.one_hot(labels, n_way).to(features.dtype)  # [S, N]
    return (onehot.T @ features) / onehot.sum(0).unsqueeze(1)


METRICS = ("euclidean", "cosine")


def proto_logits(query_features: torch.Tensor, protos: torch.Tensor, metric: str = "euclidean",
                 scale: float | None = None) -> torch.Tensor:
    """Prototypical Networks' logits (Snell et al., 2017, eq. 2): ``-d(f(x), c_k)`` for each prototype,
    so that their softmax is ``p(y = k | x)``.

    - ``euclidean``: ``-||f(x) - c_k||^2``, the squared Euclidean distance the paper uses (times
      ``scale``, default 1);
    - ``cosine``: ``scale * cos(f(x), c_k)`` (``scale`` default 10, a temperature of this library's
      choosing: raw cosines lie in [-1, 1], too flat a softmax to train on; the paper finds cosine
      well below squared Euclidean distance).

    Shape:
        query_features: ``[Q, D]``; protos: ``[N, D]``; returns ``[Q, N]``.
    """
    if metric not in METRICS:
        raise TransferkitError(f"proto_logits: 'metric' must be one of {', '.join(METRICS)}; got {metric!r}.")
    if metric == "euclidean":
        dist = (query_features.unsqueeze(1) - protos.unsqueeze(0)).pow(2).sum(-1)
        return -(1.0 if scale is None else scale) * dist
    cos = F.normalize(query_features, dim=-1) @ F.normalize(protos, dim=-1).T
    return (10.0 if scale is None else scale) * cos


def proto_loss(support_features: torch.Tensor, support_y: torch.Tensor, query_features: torch.Tensor,
               query_y: torch.Tensor, n_way: int, metric: str = "euclidean", scale: float | None = None
               ) -> torch.Tensor:
    """The episode loss of Prototypical Networks (Snell et al., 2017, Algorithm 1): the cross-entropy
    of the query points over :func:`proto_logits` to the support set's :func:`prototypes`.

    Shape:
        support_features: ``[S, D]``; support_y: ``[S]``; query_features: ``[Q, D]``; query_y:
        ``[Q]``; returns a scalar.
    """
    logits = proto_logits(query_features, prototypes(support_features, support_y, n_way), metric, scale)
    return F.cross_entropy(logits, query_y)
