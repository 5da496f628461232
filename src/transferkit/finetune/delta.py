"""DELTA: fine-tune while keeping the backbone's feature maps close to the source model's."""

from __future__ import annotations

import copy

import torch

from transferkit.errors import TransferkitError
from transferkit.strategy import Strategy, check_number
from transferkit.finetune.functional import feature_map_distance


class DELTA(Strategy):
    """Penalty ``weight * sum_stages ||FM(x) - FM_src(x)||^2`` between the fine-tuned and the frozen
    source backbone's stage outputs on the same batch (Li et al., 2019, ICLR, "DELTA"), with every
    channel weighted equally (the paper's variant without attention). Unlike L2-SP it constrains what
    the layers compute, not the weights themselves. All layers train (combine with ``partial`` etc.).

    The source copy is taken when training starts and is saved with the strategy (once per run: it
    does not change).

    Args:
        weight: multiplier of the feature-map distance (alpha in the paper).
        stages: how many backbone stages, counted from the output, are regularised (None: all).
    """

    name = "delta"

    def __init__(self, weight: float = 0.01, stages: int | None = None) -> None:
        super().__init__()
        check_number("delta", "weight", weight, low=0.0)
        if stages is not None:
            check_number("delta", "stages", stages, low=1, integer=True)
        self.weight, self.n_stages = float(weight), stages
        self._maps: dict[str, list[torch.Tensor]] = {"model": [], "source": []}
        self._handles: list = []
        self._armed = False  # True between prepare_batch and the end of the next forward with gradients

    def prepare_model(self, model):
        self.source = copy.deepcopy(model.backbone).requires_grad_(False).eval()
        self._handles = [*self._hook(model.backbone, "model"), *self._hook(self.source, "source")]
        return model

    def _hook(self, backbone, key: str) -> list:
        """Forward hooks that keep the chosen stages' outputs. The model's are kept only for the first
        forward with gradients after ``prepare_batch`` -- the target batch's, which the trainer runs
        next -- so forwards other strategies run in the same step (``joint``'s source batch, ``kd``'s
        transfer set) are never paired with the source copy's maps of the target batch."""
        stages = backbone.stages()
        chosen = stages[-self.n_stages:] if self.n_stages else stages
        last = chosen[-1]

        def keep(module, inputs, output):
            if key == "source":
                self._maps["source"].append(output[0] if isinstance(output, tuple) else output)
            elif torch.is_grad_enabled() and self._armed:
                self._maps["model"].append(output[0] if isinstance(output, tuple) else output)
                if module is last:
                    self._armed = False  # the target batch's forward is complete
        return [s.register_forward_hook(keep) for s in chosen]

    def prepare_batch(self, batch):
        self._maps["model"], self._armed = [], True
        return batch

    def train(self, mode: bool = True):
        super().train(mode)
        if hasattr(self, "source"):
            self.source.eval()  # the source's BatchNorm statistics and dropout stay as at inference
        return self

    def loss_terms(self, batch, out, model):
        if batch.precomputed:
            raise TransferkitError("delta cannot run on cached features; combine it with a strategy that trains "
                                   "on inputs (full, partial, discriminative).")
        maps, self._maps["model"], self._armed = self._maps["model"], [], False
        self._maps["source"] = []
        with torch.no_grad():
            self.source.features(batch.x)
        source_maps, self._maps["source"] = self._maps["source"], []
        if len(maps) != len(source_maps):
            raise TransferkitError("delta found no feature maps of the training batch's forward; it runs inside "
                                   "the trainer, which calls prepare_batch before each forward.")
        return {"penalty": self.weight * feature_map_distance(maps, source_maps)}

    def fixed_state_keys(self):
        return {k for k in self.state_dict() if k.startswith("source.")}

    def after_task(self, model, task):
        for h in self._handles:  # the trained model carries no hooks of this strategy
            h.remove()
        self._handles = []
