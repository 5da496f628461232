"""Atomic checkpoints: safetensors weights, optimizer state, and a JSON trainer state.

Each checkpoint is a folder written under a temporary name and renamed into place; the
``LATEST`` pointer is replaced atomically afterwards, so a crash never leaves a torn checkpoint.
A checkpoint holds only the tensors that training can change (modules with a trainable
parameter, and the strategy's own state): a frozen backbone is rebuilt from its source weights
and is not written again every epoch.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file, save_model
from torch import nn

from transferkit.backbones.weights import load_weights  # noqa: F401  (re-exported: checkpoints and runs load with it)

MODEL_FILE = "model.safetensors"
STRATEGY_FILE = "strategy.safetensors"


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_weights(model: nn.Module, path: Path) -> None:
    """Write all of ``model``'s weights to ``path`` as safetensors, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    save_model(model, str(tmp))
    os.replace(tmp, path)


def trainable_state_keys(model: nn.Module, trainable: set[int]) -> set[str]:
    """State-dict keys of every module that owns a parameter in ``trainable`` (its buffers included)."""
    keys = set()
    for name, module in model.named_modules():
        own = dict(module.named_parameters(recurse=False))
        if any(id(p) in trainable for p in own.values()):
            prefix = f"{name}." if name else ""
            keys |= {prefix + k for k in own} | {prefix + k for k, _ in module.named_buffers(recurse=False)}
    return keys


def _save_tensors(state: dict[str, torch.Tensor], path: Path) -> None:
    out, storages = {}, set()
    for k, v in state.items():  # safetensors refuses tensors that share storage: copy repeats
        ptr = v.untyped_storage().data_ptr()
        out[k] = v.detach().clone().contiguous() if ptr in storages else v.detach().contiguous()
        storages.add(ptr)
    save_file(out, str(path))


def save_checkpoint(ckpt_root: Path, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict, keep: set[int], keys: set[str], strategy: nn.Module | None = None) -> Path:
    """Write checkpoint ``epoch`` (tensors in ``keys``) and point ``LATEST`` at it; prune those not in ``keep``."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"epoch-{epoch:04d}"
    tmp = ckpt_root / f".epoch-{epoch:04d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    _save_tensors({k: v for k, v in model.state_dict().items() if k in keys}, tmp / MODEL_FILE)
    if strategy is not None and strategy.state_dict():
        _save_tensors(strategy.state_dict(), tmp / STRATEGY_FILE)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write_text(ckpt_root / "LATEST", final.name)
    for old in ckpt_root.glob("epoch-*"):
        if int(old.name.split("-")[1]) not in keep | {epoch}:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(ckpt_root: Path) -> Path | None:
    pointer = ckpt_root / "LATEST"
    if not pointer.is_file():
        return None
    path = ckpt_root / pointer.read_text().strip()
    return path if path.is_dir() else None


def read_checkpoint(path: Path, model: nn.Module, strategy: nn.Module | None = None) -> tuple[dict, dict]:
    """Load weights (and strategy state) into place; return (trainer state, optimizer state dict)."""
    load_weights(model, path / MODEL_FILE, partial=True)
    if strategy is not None and (path / STRATEGY_FILE).is_file():
        strategy.load_state_dict(load_file(str(path / STRATEGY_FILE)))
    state = json.loads((path / "state.json").read_text())
    optim = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    return state, optim


def save_task_checkpoint(ckpt_root: Path, index: int, model: nn.Module, strategy: nn.Module, state: dict) -> Path:
    """Continual learning: after task ``index`` write the whole model, the strategy's state
    (buffers, Fisher, teachers) and ``state`` to ``task-XXXX``, atomically; point ``LATEST`` at it
    and drop older task checkpoints."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final, tmp = ckpt_root / f"task-{index:04d}", ckpt_root / f".task-{index:04d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    _save_tensors(model.state_dict(), tmp / MODEL_FILE)
    if strategy.state_dict():
        _save_tensors(strategy.state_dict(), tmp / STRATEGY_FILE)
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write_text(ckpt_root / "LATEST", final.name)
    for old in ckpt_root.glob("task-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def read_task_checkpoint(path: Path, model: nn.Module, strategy: nn.Module) -> dict:
    load_weights(model, path / MODEL_FILE)
    if (path / STRATEGY_FILE).is_file():
        strategy.load_state_dict(load_file(str(path / STRATEGY_FILE)))
    return json.loads((path / "state.json").read_text())
