"""iCaRL (Rebuffi et al., 2017): herding exemplars, distillation, nearest-mean-of-exemplars."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from transferkit.continual.base import TeacherMixin, frozen_copy
from transferkit.continual.buffers import ReservoirBuffer
from transferkit.continual.functional import herding, nearest_mean_scores
from transferkit.continual.replay import task_data, with_replay
from transferkit.errors import TransferkitError
from transferkit.strategy import check_number


class ICaRL(TeacherMixin):
    """Class-incremental learning with a fixed memory of ``size`` exemplars shared by the classes
    seen so far, chosen by herding; training replays exemplars with a sigmoid (binary
    cross-entropy) loss whose targets for old classes are the previous model's outputs; prediction
    is the nearest mean of the exemplars' normalised features. The loss covers the classes seen so
    far (earlier tasks' and the current one's), not the outputs of classes still to come.

    iCaRL needs new classes in every task over one head: it refuses domain-incremental streams
    and streams with one head per task.

    Args:
        size: exemplar memory size (examples, split equally over the classes seen).
        batch_size: exemplars replayed per step (None: as many as the stream batch).
    """

    name = "icarl"

    def __init__(self, size: int = 200, batch_size: int | None = None) -> None:
        super().__init__()
        check_number("icarl", "size", size, low=1, integer=True)
        if batch_size is not None:
            check_number("icarl", "batch_size", batch_size, low=1, integer=True)
        self.size, self.batch_size = int(size), batch_size
        self.memory = ReservoirBuffer(self.size)
        self.register_buffer("old_classes", torch.zeros(0, dtype=torch.long))
        self.register_buffer("means", torch.zeros(0))
        self.register_buffer("task_classes", torch.zeros(0, dtype=torch.long))

    def check_stream(self, stream):
        if stream.scenario == "domain":
            raise TransferkitError(f"icarl learns new classes in each task, but stream '{stream.name}' is "
                                   "domain-incremental (every task has the same classes); use er, derpp or ewc.")
        if stream.multi_head:
            raise TransferkitError("icarl classifies over one head shared by every class; set stream.multi_head "
                                   "to false (task-IL then masks the other tasks' classes).")

    def before_task(self, model, task):
        classes = torch.as_tensor(list(getattr(task, "classes", [])), dtype=torch.long)
        if getattr(task, "head", None) is not None:
            raise TransferkitError("icarl classifies over one head shared by every class; set stream.multi_head "
                                   "to false (task-IL then masks the other tasks' classes).")
        repeated = sorted(set(classes.tolist()) & set(self.old_classes.tolist()))
        if repeated:
            raise TransferkitError(f"icarl learns new classes in each task, but task '{task.name}' repeats classes "
                                   f"{repeated} of earlier tasks (a domain-incremental stream); use er, derpp or ewc.")
        self.task_classes = classes.to(self.old_classes.device)

    def prepare_batch(self, batch):
        return with_replay(batch, self.memory, self.batch_size)

    def task_weight(self):
        return 0.0  # the sigmoid loss below replaces cross-entropy

    def loss_terms(self, batch, out, model):
        target = F.one_hot(batch.targets, out.logits.shape[1]).float()
        cls = self.old_classes.to(target.device)
        if self.old is not None:
            with torch.no_grad():
                old = torch.sigmoid(self.old(batch.x, task=batch.task).logits)
            target[:, cls] = old[:, cls]
        seen = torch.unique(torch.cat([cls, self.task_classes.to(target.device), batch.targets]))
        return {"bce": F.binary_cross_entropy_with_logits(out.logits[:, seen], target[:, seen])}

    @torch.no_grad()
    def _features(self, model, x: torch.Tensor) -> torch.Tensor:
        device = next(model.parameters()).device
        return torch.cat([model.backbone.features(x[a:a + 1000].to(device)) for a in range(0, len(x), 1000)])

    @torch.no_grad()
    def after_task(self, model, task):
        was_training = model.training
        model.eval()
        new = torch.as_tensor(task.classes, dtype=torch.long)
        classes = torch.unique(torch.cat([self.old_classes.cpu(), new]))
        per_class = self.size // len(classes)
        kept = self.memory.all() if len(self.memory) else {"x": torch.zeros(0), "y": torch.zeros(0, dtype=torch.long)}
        x_all, y_all = task_data(task, "cpu")
        memory = ReservoirBuffer(self.size)
        for c in classes.tolist():
            if c in self.old_classes.tolist():  # exemplars are in herding order: keep the first ones
                xs = kept["x"][kept["y"].cpu() == c][:per_class]
            else:
                xc = x_all[y_all == c]
                xs = xc[herding(self._features(model, xc).cpu(), per_class)]
            if len(xs):
                memory.add(xs, torch.full((len(xs),), c, dtype=torch.long))
        self.memory = memory.to(self.old_classes.device)
        stored = self.memory.all()
        feats = F.normalize(self._features(model, stored["x"]), dim=1)
        width = int(max(classes.max().item() + 1, self.means.shape[0] if self.means.dim() == 2 else 0))
        means = torch.full((width, feats.shape[1]), float("nan"), device=feats.device)
        for c in classes.tolist():
            means[c] = feats[stored["y"].to(feats.device) == c].mean(0)
        self.means = means
        self.old_classes = classes.to(self.old_classes.device)
        self.old = frozen_copy(model)
        model.train(was_training)

    def predict(self, model, x, task=None):
        if self.means.dim() != 2:
            return None
        n_out = model(x[:1], task=task).logits.shape[1]
        means = torch.nan_to_num(self.means, nan=0.0)
        scores = torch.full((len(x), n_out), float("-inf"), device=x.device)
        scores[:, :len(means)] = nearest_mean_scores(model.backbone.features(x), means.to(x.device))
        unseen = torch.ones(n_out, dtype=torch.bool, device=x.device)
        unseen[:len(means)] = torch.isnan(self.means[:, 0]).to(x.device)
        scores[:, unseen] = float("-inf")
        return scores
