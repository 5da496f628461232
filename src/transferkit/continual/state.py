"""Strategy state whose shapes are known only once training starts (buffers, Fisher matrices).

``nn.Module.load_state_dict`` refuses a tensor whose shape differs from the registered one, and a
replay buffer or an importance estimate is empty until the first task. Modules deriving from
``GrowingState`` accept any shape for their own buffers when loading, so a checkpoint restores
them exactly (they are written to safetensors with the rest of the strategy).
"""

from __future__ import annotations

import torch
from torch import nn


class GrowingState(nn.Module):
    def set_state(self, name: str, value: torch.Tensor | None) -> None:
        """Register (or replace) buffer ``name``; ``None`` removes it."""
        if value is None:
            self._buffers.pop(name, None)
        else:
            self.register_buffer(name, value)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        for key, value in state_dict.items():
            name = key[len(prefix):]
            if key.startswith(prefix) and "." not in name and name not in self._parameters:
                self.register_buffer(name, value.clone())
        for name in [n for n in self._buffers if prefix + n not in state_dict]:
            self._buffers.pop(name)  # state that did not exist yet at the checkpoint
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
