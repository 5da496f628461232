"""Learning without Forgetting (Li & Hoiem, 2016)."""

from __future__ import annotations

import torch

from transferkit.continual.base import TeacherMixin, frozen_copy, head_index
from transferkit.finetune.functional import distillation_loss
from transferkit.data.batches import batches
from transferkit.errors import TransferkitError
from transferkit.strategy import check_number
from transferkit.model import Output


class LwF(TeacherMixin):
    """Distil the previous model's outputs on the current data into the new model:
    ``weight * KD_T(student, teacher)`` over the classes of earlier tasks, or, with one head per
    task, summed over the heads of earlier tasks (heads of later tasks are untrained and left out).
    The teacher is a frozen copy taken at the end of each task, so the first task gets no extra term.

    ``KD_T`` is ``KL(softmax(teacher / T) || softmax(student / T))``, the paper's loss up to the
    teacher's entropy (a constant), without Hinton's ``T^2`` factor: Li & Hoiem (2016), Mammoth and
    Avalanche leave it out. It follows the model's task type: for multi-label heads each label's
    softened Bernoulli, and for regression the mean squared difference of the outputs (domain
    streams of any task type; see ``finetune.functional.distillation_loss``).

    Args:
        weight: the distillation term's multiplier (lambda_o; alpha in Mammoth and Avalanche).
        temperature: softmax temperature of the distillation (T; the paper uses 2).
        t2_scaling: multiply the term by ``T^2`` as Hinton et al.'s distillation does (what
            transferkit did before; at T = 2 that is four times the paper's term).
    """

    name = "lwf"

    def __init__(self, weight: float = 1.0, temperature: float = 2.0, t2_scaling: bool = False) -> None:
        super().__init__()
        check_number("lwf", "weight", weight, low=0.0)
        check_number("lwf", "temperature", temperature, low=1e-6)
        if not isinstance(t2_scaling, bool):
            raise TransferkitError(f"lwf: 't2_scaling' must be true or false; got {t2_scaling!r}.")
        self.weight, self.temperature, self.t2_scaling = float(weight), float(temperature), t2_scaling
        self.register_buffer("old_classes", torch.zeros(0, dtype=torch.long))
        self.register_buffer("old_heads", torch.zeros(0, dtype=torch.long))  # positions in model.heads

    @torch.no_grad()
    def prepare_data(self, model, dataset, phase):
        """The frozen teacher's outputs on the whole training set, computed once per task in large
        batches (as the reference implementation does) when the loader reports row positions.

        The trainer prepares its training set first; a later call in the same phase (its
        validation set) leaves the cached outputs alone, and the first lookup checks that the
        batch's rows are the cached dataset's."""
        cached = self.__dict__.get("_teacher")
        if cached is not None and cached["phase"] is phase:
            return dataset
        self.__dict__["_teacher"] = None
        if self.old is not None and getattr(dataset, "batch_indexable", False) and not phase.precomputed:
            device = next(self.old.parameters()).device
            outs = [self.old(x.to(device)) for x, _ in batches(dataset, 1024)]
            self.__dict__["_teacher"] = {"phase": phase, "data": dataset, "checked": False,
                                         "out": Output(torch.cat([o.logits for o in outs]),
                                                       torch.cat([o.features for o in outs]))}
        return dataset

    def _cached(self, batch) -> dict | None:
        cached = self.__dict__.get("_teacher")
        if cached is None or batch.index is None or len(batch.index) != len(batch.targets) or batch.task is not None \
                or int(batch.index.max()) >= len(cached["data"]):
            return None
        if not cached["checked"]:
            x, _ = cached["data"][batch.index[:1].cpu()]
            if not torch.equal(torch.as_tensor(x).to(batch.x.device, batch.x.dtype), batch.x[:1]):
                self.__dict__["_teacher"] = None  # not the dataset being trained on: forward the teacher instead
                return None
            cached["checked"] = True
        return cached

    def _teacher_out(self, batch):
        cached = self._cached(batch)
        if cached is not None:
            out = cached["out"]
            idx = batch.index.to(out.logits.device)
            return Output(out.logits[idx], out.features[idx])
        with torch.no_grad():
            return self.old(batch.x, task=batch.task, precomputed=batch.precomputed)

    def loss_terms(self, batch, out, model):
        if self.old is None or self.weight == 0:
            return {}
        terms = []
        teacher = self._teacher_out(batch)
        task = getattr(getattr(model, "task_type", None), "name", "classification")

        def distill(student, old):
            return distillation_loss(task, student, old, self.temperature, self.t2_scaling)

        if batch.task is not None and len(model.heads) > 1:  # one head per task: distil the earlier tasks' heads
            names = list(model.heads)
            for head in (names[h] for h in self.old_heads.tolist()):
                if head != batch.task:
                    t = self.old.heads[head](teacher.features)
                    terms.append(distill(model.heads[head](out.features), t))
        else:  # the classes of earlier tasks (all outputs when the tasks did not say)
            cls = self.old_classes.to(out.logits.device) if len(self.old_classes) else slice(None)
            terms.append(distill(out.logits[:, cls], teacher.logits[:, cls]))
        return {"distill": self.weight * sum(terms)} if terms else {}

    def after_task(self, model, task):
        self.old = frozen_copy(model)
        classes = torch.as_tensor(getattr(task, "classes", []), dtype=torch.long)
        self.old_classes = torch.unique(torch.cat([self.old_classes.cpu(), classes]))
        head = task if isinstance(task, str) else getattr(task, "head", None)
        if head is not None and head in model.heads:
            here = torch.tensor([head_index(model, head)], dtype=torch.long)
            self.old_heads = torch.unique(torch.cat([self.old_heads.cpu(), here]))
