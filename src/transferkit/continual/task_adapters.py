"""Parameter isolation with per-task adapters on a frozen (pretrained) backbone."""

from __future__ import annotations

from torch import nn

from transferkit.continual.base import ContinualStrategy
from transferkit.errors import TransferkitError
from transferkit.finetune.adapters import Bottleneck, _out_channels
from transferkit.strategy import Phase, check_number


def _dispatch(container: nn.ModuleDict, backbone: nn.Module):
    def apply(module, inputs, output):
        adapter = container[backbone.active_task] if backbone.active_task in container else None
        if adapter is None:
            return output
        if isinstance(output, tuple):
            return (adapter(output[0]), *output[1:])
        return adapter(output)
    return apply


class TaskAdapters(ContinualStrategy):
    """Each task gets its own residual bottleneck adapters (after the last ``stages`` backbone
    stages) and its own head; the backbone stays frozen. A task's parameters are never touched
    again, so task-incremental accuracy cannot drop: zero forgetting by construction. The memory
    cost per task (its adapters and head) is reported as ``new_params``.

    Needs a task-incremental stream with one head per task (``stream.multi_head: true``).

    Args:
        reduction: channels / adapter width.
        stages: how many backbone stages, from the output, get an adapter.
    """

    name = "task_adapters"
    changes_structure = True

    def __init__(self, reduction: int = 8, stages: int = 2) -> None:
        super().__init__()
        check_number("task_adapters", "reduction", reduction, low=1, integer=True)
        check_number("task_adapters", "stages", stages, low=1, integer=True)
        self.reduction, self.n_stages = int(reduction), int(stages)

    def prepare_model(self, model):
        super().prepare_model(model)
        bb = model.backbone
        if not hasattr(bb, "task_adapters"):
            bb.active_task = None
            bb.task_adapters = nn.ModuleList()
            for stage in bb.stages()[-self.n_stages:]:
                container = nn.ModuleDict()
                container.channels = _out_channels(stage)
                bb.task_adapters.append(container)
                stage.register_forward_hook(_dispatch(container, bb))
        return model

    def before_task(self, model, task):
        if getattr(task, "head", None) is None:
            raise TransferkitError("task_adapters needs one head per task; set stream.scenario: task and "
                                   "stream.multi_head: true.")
        bb = model.backbone
        for container in bb.task_adapters:
            if task.head not in container:
                channels, conv = container.channels
                container[task.head] = Bottleneck(channels, max(1, channels // self.reduction), conv).to(
                    next(model.parameters()).device)
        bb.active_task = task.head

    def phases(self, model, epochs, lr):
        task = model.backbone.active_task
        params = [p for c in model.backbone.task_adapters for p in c[task].parameters()]
        return [Phase("train", epochs, [{"params": params, "lr": lr},
                                        {"params": list(model.heads[task].parameters()), "lr": lr}])]

    def predict(self, model, x, task=None):
        model.backbone.active_task = task
        return model(x, task=task).logits
