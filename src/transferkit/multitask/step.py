"""The multi-task training step, as the strategy hook that forms the gradient.

The model carries its loss weighter (``model.weighter``: its learnable weights train, move and
are checkpointed with the model). Each step the per-task losses (over each task's labelled rows)
go to the weighter; gradient-based weighters instead get the per-task gradients of the shared
parameters (one batched backward) and set the shared gradient to their aggregated direction.
Every ``similarity_every`` steps the pairwise cosines of the task gradients are logged.
"""

from __future__ import annotations

import torch

from transferkit import collective
from transferkit.errors import TransferkitError
from transferkit.losses import labelled
from transferkit.metrics.multitask import gram_cosines
from transferkit.multitask.gradients import aggregated_backward, shared_gram
from transferkit.strategy import Step, Strategy, check_number

# Weighters whose step under several processes is the one-process step: their weights follow from the
# whole batch's losses or per-task gradients, which the processes share (``exact_in_processes``).
PROCESS_WEIGHTERS = ("equal", "fixed", "uncertainty", "pcgrad", "cagrad", "imtl_g")


class MultiTaskStep(Strategy):
    """Weigh the task losses with the model's weighter and form the gradient (Caruana, 1997, for the
    shared model; each weighter cites its own paper).

    Logs ``task/<t>`` (each task's loss), ``weight/<t>`` (its weight this step) and, every
    ``similarity_every`` steps, ``gradcos/<a>|<b>`` (the cosine of two tasks' gradients of the
    shared parameters; for gradient-based weighters, from the Gram matrix they already have).
    The strategy's other terms (when composed) are added to the total unweighted.

    Args:
        similarity_every: log the task-gradient cosines every this many steps (0: never).
    """

    name = "multitask"
    sets_gradients = True  # the gradient-based weighters write .grad themselves

    def __init__(self, similarity_every: int = 0) -> None:
        super().__init__()
        check_number("multitask", "similarity_every", similarity_every, low=0, integer=True)
        self.similarity_every = int(similarity_every)

    def prepare_model(self, model):
        if not isinstance(getattr(model, "weighter", None), torch.nn.Module) or not hasattr(model, "shared_parameters"):
            raise TransferkitError("multitask: the model needs a weighter and shared parameters; build a multi-task "
                                   "model (HardSharing, MMoE, CrossStitch) and set model.weighter = create_weighter(...).")
        if collective.processes() > 1 and not getattr(model.weighter, "exact_in_processes", False):
            raise TransferkitError(
                f"Weighter '{model.weighter.name}' is not checked under several processes (its weights follow from "
                f"each process's rows alone); use one of {', '.join(PROCESS_WEIGHTERS)}, or train in one process.")
        return model

    def prepare_batch(self, batch):
        if collective.processes() > 1 and isinstance(batch.targets, dict) and collective.total(  # every process alike
                int(not all(bool(labelled(y).all()) for y in batch.targets.values())), next(iter(batch.targets.values())).device):
            raise TransferkitError(
                "The multi-task data has rows without every task's label, whose per-task means several processes "
                "cannot share exactly; train it in one process.")
        return batch

    def backward(self, losses, terms, step: Step):
        model, weighter = step.model, step.model.weighter
        shared = [p for p in model.shared_parameters() if p.requires_grad]
        total, weights = weighter(losses, features=step.out.features, last_shared=model.last_shared_parameters())
        every = self.similarity_every and step.index % self.similarity_every == 0
        K = None
        if getattr(weighter, "gradient_based", False):
            shared_ids = {id(p) for p in shared}
            specific = [p for p in model.parameters() if p.requires_grad and id(p) not in shared_ids]
            w, K = aggregated_backward(list(losses.values()), shared, specific, weighter.weights,
                                       retain_graph=bool(terms), reduce=step.reduce if collective.processes() > 1 else None)
            weights = dict(zip(losses, w.tolist()))
            if terms:
                step.backward(sum(terms.values()))
        else:
            if every and len(losses) > 1:
                K = shared_gram(list(losses.values()), shared)
            step.backward(total + sum(terms.values()))
        logged = {f"task/{t}": v for t, v in losses.items()} | {f"weight/{t}": torch.tensor(w) for t, w in weights.items()}
        if every and K is not None:
            cos, names = gram_cosines(K), list(losses)
            logged |= {f"gradcos/{a}|{b}": cos[i, j].float() for i, a in enumerate(names) for j, b in enumerate(names)
                       if i < j}
        return logged | terms, total.detach()

    def after_epoch(self, model):
        end_epoch = getattr(model.weighter, "end_epoch", None)  # e.g. DWA's per-epoch average losses
        if end_epoch is not None:
            end_epoch()
