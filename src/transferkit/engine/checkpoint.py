"""Atomic checkpoints: safetensors weights, optimizer state, and a JSON trainer state.

Each checkpoint is a folder written under a temporary name and renamed into place; the
``LATEST`` pointer is replaced atomically afterwards, so a crash never leaves a torn checkpoint.
Every file is flushed to disk (``fsync``) before the rename that publishes it, and so is the
folder holding the new name, so a power loss cannot publish an empty or partial file either.
A checkpoint holds only the tensors that training can change (modules with a trainable
parameter, and the strategy's own state): a frozen backbone is rebuilt from its source weights
and is not written again every epoch. Strategy state that never changes during training (a
frozen source copy, L2-SP's anchors: ``Strategy.fixed_state_keys``) is written once per run,
beside the epoch folders, and read back with each of them.
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
from transferkit.errors import TransferkitError

MODEL_FILE = "model.safetensors"
STRATEGY_FILE = "strategy.safetensors"
FIXED_STRATEGY_FILE = "strategy-fixed.safetensors"  # beside the epoch folders, written once per run


def fsync_file(path: Path) -> None:
    """Flush a written file's data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a file created or renamed in it) to the disk; a no-op where
    folders cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _publish(tmp: Path, final: Path) -> None:
    """Rename a flushed ``tmp`` (file or folder) to ``final`` and flush the parent folder."""
    os.replace(tmp, final)
    fsync_dir(final.parent)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    _publish(tmp, path)


def save_weights(model: nn.Module, path: Path) -> None:
    """Write all of ``model``'s weights to ``path`` as safetensors, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    save_model(model, str(tmp))
    fsync_file(tmp)
    _publish(tmp, path)


def trainable_state_keys(model: nn.Module, trainable: set[int]) -> set[str]:
    """State-dict keys of every module that owns a parameter in ``trainable`` (its buffers included),
    and the buffers of every module without any parameter (state kept by training alone, such as a
    multi-task weighter's loss history)."""
    keys = set()
    saved = set(model.state_dict())
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        own = dict(module.named_parameters(recurse=False))
        buffers = {prefix + k for k, _ in module.named_buffers(recurse=False)} & saved  # persistent ones
        if any(id(p) in trainable for p in own.values()):
            keys |= {prefix + k for k in own} | buffers
        elif next(module.parameters(), None) is None:
            keys |= buffers
    return keys


def _save_tensors(state: dict[str, torch.Tensor], path: Path) -> None:
    out, storages = {}, set()
    for k, v in state.items():  # safetensors refuses tensors that share storage: copy repeats
        ptr = v.untyped_storage().data_ptr()
        out[k] = v.detach().clone().contiguous() if ptr in storages else v.detach().contiguous()
        storages.add(ptr)
    save_file(out, str(path))
    fsync_file(path)


def _write_text(path: Path, text: str) -> None:
    path.write_text(text)
    fsync_file(path)


def _split_strategy_state(strategy: nn.Module | None) -> tuple[dict, dict]:
    """(the strategy's changing state, its fixed state: ``fixed_state_keys``)."""
    if strategy is None:
        return {}, {}
    state = strategy.state_dict()
    fixed_keys = strategy.fixed_state_keys() if hasattr(strategy, "fixed_state_keys") else set()
    return ({k: v for k, v in state.items() if k not in fixed_keys},
            {k: v for k, v in state.items() if k in fixed_keys})


def save_checkpoint(ckpt_root: Path, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict, keep: set[int], keys: set[str], strategy: nn.Module | None = None) -> Path:
    """Write checkpoint ``epoch`` (tensors in ``keys``) and point ``LATEST`` at it; prune those not in ``keep``.

    The strategy's fixed state goes to ``FIXED_STRATEGY_FILE`` at the first checkpoint of a run
    (no ``LATEST`` yet) or when that file is missing, never again in later epochs."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    changing, fixed = _split_strategy_state(strategy)
    fixed_path = ckpt_root / FIXED_STRATEGY_FILE
    if fixed and (not fixed_path.is_file() or latest_checkpoint(ckpt_root) is None):
        tmp_fixed = ckpt_root / f".{FIXED_STRATEGY_FILE}.tmp"
        _save_tensors(fixed, tmp_fixed)
        _publish(tmp_fixed, fixed_path)
    final = ckpt_root / f"epoch-{epoch:04d}"
    tmp = ckpt_root / f".epoch-{epoch:04d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    _save_tensors({k: v for k, v in model.state_dict().items() if k in keys}, tmp / MODEL_FILE)
    if changing:
        _save_tensors(changing, tmp / STRATEGY_FILE)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    fsync_file(tmp / "optimizer.pt")
    _write_text(tmp / "state.json", json.dumps(state, indent=1))
    fsync_dir(tmp)
    shutil.rmtree(final, ignore_errors=True)
    _publish(tmp, final)
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


def _load_strategy(strategy: nn.Module, files: list[Path]) -> None:
    """Load the strategy's state from those of ``files`` that exist, all of it."""
    if not strategy.state_dict():
        return
    state = {k: v for f in files if f.is_file() for k, v in load_file(str(f)).items()}
    missing = sorted(set(strategy.state_dict()) - set(state))
    if missing:
        raise TransferkitError(f"Checkpoint '{files[0].parent}' lacks the strategy state '{missing[0]}' "
                               f"(is '{FIXED_STRATEGY_FILE}' beside it missing?); train the run again without --resume.")
    strategy.load_state_dict(state)


def read_checkpoint(path: Path, model: nn.Module, strategy: nn.Module | None = None) -> tuple[dict, dict]:
    """Load weights (and strategy state, the fixed part from beside the epoch folders) into place;
    return (trainer state, optimizer state dict)."""
    load_weights(model, path / MODEL_FILE, partial=True)
    if strategy is not None:
        _load_strategy(strategy, [path / STRATEGY_FILE, path.parent / FIXED_STRATEGY_FILE])
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
    _write_text(tmp / "state.json", json.dumps(state, indent=1))
    fsync_dir(tmp)
    shutil.rmtree(final, ignore_errors=True)
    _publish(tmp, final)
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
