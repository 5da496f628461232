"""Maximum classifier discrepancy (Saito et al., CVPR 2018): two classifiers on one feature extractor."""

from __future__ import annotations

import copy

import torch
from torch import nn

from transferkit.adapt.base import DomainAdaptation
from transferkit.adapt.functional import classifier_discrepancy
from transferkit.errors import TransferkitError
from transferkit.strategy import check_number


class MCD(DomainAdaptation):
    """MCD's three-step update, each step on one batch of source and target rows:

    A. the backbone and both classifiers minimise the source loss of each classifier;
    B. with the backbone fixed, the classifiers minimise the source loss minus ``weight`` x their
       discrepancy on the target rows (they disagree as much as they can);
    C. with the classifiers fixed, the backbone minimises ``weight`` x that discrepancy, ``num_k``
       times (it moves target features to where they agree).

    The model's own head is the first classifier (the one evaluation uses); the second is a copy,
    initialised afresh, that this strategy keeps. Steps A and B apply the optimizer themselves; the
    trainer applies the last step C. Evaluation uses the first classifier only (the paper also reports
    the second and their mean). Composed parts' terms join step A's loss.
    """

    name = "mcd"
    sets_gradients = True

    def __init__(self, weight: float = 1.0, num_k: int = 4, seed: int | None = None) -> None:
        super().__init__(weight, seed)
        check_number("MCD", "num_k", num_k, low=1, integer=True)
        self.num_k = num_k  # backbone updates (step C) per batch
        self.second: nn.Module | None = None

    def prepare_model(self, model):
        model = super().prepare_model(model)
        if self.second is None:
            if len(model.heads) != 1:
                raise TransferkitError("MCD trains one head against a second classifier; use a single-head model.")
            self.second = copy.deepcopy(model.heads[model.default_task])
            for m in self.second.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        return model

    def _losses(self, model, batch, features):
        """Each classifier's source loss and their discrepancy on the target rows."""
        tgt, task = batch.unlabelled, model.tasks[model.default_task]
        features = features.float()  # bf16 under autocast; the heads are float32
        l1, l2 = model.heads[model.default_task](features), self.second(features)
        source = task.loss(l1[~tgt], batch.targets[~tgt]) + task.loss(l2[~tgt], batch.targets[~tgt])
        return source, classifier_discrepancy(l1[tgt], l2[tgt])

    def backward(self, losses, terms, step):
        model, batch = step.model, step.batch
        if step.update is None:
            raise TransferkitError("MCD needs the trainer's update() to take its steps A and B in turn.")
        # A: everything on the source loss, with the other composed parts' terms (the trainer's forward
        # already has the features; its graph is freed by this one backward)
        source, _ = self._losses(model, batch, step.out.features)
        step.backward(source + sum(terms.values()) if terms else source)
        step.update()
        # B: the classifiers only (features detached), source loss minus the discrepancy
        with torch.no_grad():
            features = model.backbone.features(batch.x)
        source_b, disc_b = self._losses(model, batch, features)
        step.backward(source_b - self.weight * disc_b)
        step.update()
        # C: the backbone only, towards agreement; the trainer applies the last of these steps
        heads = [*model.heads.parameters(), *self.second.parameters()]
        for k in range(self.num_k):
            _, disc_c = self._losses(model, batch, model.backbone.features(batch.x))
            step.backward(self.weight * disc_c)
            for p in heads:
                p.grad = None
            if k < self.num_k - 1:
                step.update()
        return {"task": source / 2, "mcd/discrepancy": disc_c.detach()} | terms, source.detach()
