"""Learning without Forgetting (Li & Hoiem, 2016)."""

from __future__ import annotations

import torch

from transferkit.continual.base import TeacherMixin, frozen_copy
from transferkit.continual.functional import kd_loss
from transferkit.data.batches import batches
from transferkit.strategy import check_number
from transferkit.model import Output


class LwF(TeacherMixin):
    """Distil the previous model's outputs on the current data into the new model:
    ``weight * KD_T(student, teacher)`` over the classes (or heads) of earlier tasks. The teacher is
    a frozen copy taken at the end of each task, so the first task gets no extra term.

    Args:
        weight: the distillation term's multiplier (alpha).
        temperature: softmax temperature of the distillation (T).
    """

    name = "lwf"

    def __init__(self, weight: float = 1.0, temperature: float = 2.0) -> None:
        super().__init__()
        check_number("lwf", "weight", weight, low=0.0)
        check_number("lwf", "temperature", temperature, low=1e-6)
        self.weight, self.temperature = float(weight), float(temperature)
        self.register_buffer("old_classes", torch.zeros(0, dtype=torch.long))

    @torch.no_grad()
    def prepare_data(self, model, dataset, phase):
        """The frozen teacher's outputs on the whole training set, computed once per task in large
        batches (as the reference implementation does) when the loader reports row positions."""
        self.__dict__["_teacher"] = None
        if self.old is not None and getattr(dataset, "batch_indexable", False) and not phase.precomputed:
            device = next(self.old.parameters()).device
            outs = [self.old(x.to(device)) for x, _ in batches(dataset, 1024)]
            self.__dict__["_teacher"] = (len(dataset), Output(torch.cat([o.logits for o in outs]),
                                                              torch.cat([o.features for o in outs])))
        return dataset

    def _teacher_out(self, batch):
        cached = self.__dict__.get("_teacher")
        if cached is not None and batch.index is not None and len(batch.index) == len(batch.targets) \
                and batch.task is None and int(batch.index.max()) < cached[0]:
            idx = batch.index.to(cached[1].logits.device)
            return Output(cached[1].logits[idx], cached[1].features[idx])
        with torch.no_grad():
            return self.old(batch.x, task=batch.task, precomputed=batch.precomputed)

    def loss_terms(self, batch, out, model):
        if self.old is None or self.weight == 0:
            return {}
        terms = []
        teacher = self._teacher_out(batch)
        if batch.task is not None and len(model.heads) > 1:  # one head per task: distil every earlier head
            for head in self.old.heads:
                if head != batch.task:
                    t = self.old.heads[head](teacher.features)
                    terms.append(kd_loss(model.heads[head](out.features), t, self.temperature))
        else:  # the classes of earlier tasks (all outputs when the tasks did not say)
            cls = self.old_classes.to(out.logits.device) if len(self.old_classes) else slice(None)
            terms.append(kd_loss(out.logits[:, cls], teacher.logits[:, cls], self.temperature))
        return {"distill": self.weight * sum(terms)} if terms else {}

    def after_task(self, model, task):
        self.old = frozen_copy(model)
        classes = torch.as_tensor(getattr(task, "classes", []), dtype=torch.long)
        self.old_classes = torch.unique(torch.cat([self.old_classes.cpu(), classes]))
