"""What a client exchanges: the tensors its strategy trains, as named numpy arrays, and their bytes."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from transferkit.strategy import Strategy


def trainable_names(model: nn.Module, strategy: Strategy, epochs: int = 1, lr: float = 1e-3) -> list[str]:
    """Names of the parameters that some phase of ``strategy`` trains (every parameter when it names
    no phases), in ``model.named_parameters()`` order. Call after ``strategy.prepare_model``."""
    phases = strategy.phases(model, epochs, lr)
    if phases is None:
        return [n for n, _ in model.named_parameters()]
    ids = {id(p) for ph in phases for g in ph.groups for p in g["params"]}
    return [n for n, p in model.named_parameters() if id(p) in ids]


def get_arrays(model: nn.Module, names: list[str]) -> dict[str, np.ndarray]:
    """Copies of the named parameters as float32 (or their own dtype) numpy arrays, in ``names`` order."""
    params = dict(model.named_parameters())
    return {n: params[n].detach().cpu().numpy().copy() for n in names}


@torch.no_grad()
def set_arrays(model: nn.Module, arrays: dict[str, np.ndarray]) -> None:
    """Copy the named arrays into the model's parameters of the same names (shapes must match)."""
    params = dict(model.named_parameters())
    for n, a in arrays.items():
        params[n].copy_(torch.as_tensor(np.asarray(a), dtype=params[n].dtype))


def array_bytes(arrays) -> int:
    """Bytes of the arrays' data (a dict of arrays or a sequence of them)."""
    values = arrays.values() if isinstance(arrays, dict) else arrays
    return int(sum(np.asarray(a).nbytes for a in values))


def model_bytes(model: nn.Module) -> int:
    """Bytes of every tensor of the model (parameters and buffers): what sending the whole model costs."""
    return int(sum(t.numel() * t.element_size() for t in model.state_dict().values()))
