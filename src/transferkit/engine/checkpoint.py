"""Atomic checkpoints: safetensors weights, optimizer state, and a JSON trainer state.

Each checkpoint is a folder written under a temporary name and renamed into place; the
``LATEST`` pointer is replaced atomically afterwards, so a crash never leaves a torn checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from transferkit.errors import TransferkitError

MODEL_FILE = "model.safetensors"


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_weights(model: nn.Module, path: Path) -> None:
    """Write ``model``'s weights to ``path`` as safetensors, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    save_model(model, str(tmp))
    os.replace(tmp, path)


def load_weights(model: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise TransferkitError(f"Weights file '{path}' is missing; train the run first or check the path.")
    missing, unexpected = load_model(model, str(path), strict=False)
    if missing or unexpected:
        raise TransferkitError(
            f"Weights file '{path}' does not fit the model built from its config; re-train the run."
        )


def save_checkpoint(ckpt_root: Path, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict, keep: set[int]) -> Path:
    """Write checkpoint ``epoch`` and point ``LATEST`` at it; remove checkpoints not in ``keep``."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"epoch-{epoch:04d}"
    tmp = ckpt_root / f".epoch-{epoch:04d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_model(model, str(tmp / MODEL_FILE))
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


def read_checkpoint(path: Path, model: nn.Module) -> tuple[dict, dict]:
    """Load weights into ``model``; return (trainer state, optimizer state dict)."""
    load_weights(model, path / MODEL_FILE)
    state = json.loads((path / "state.json").read_text())
    optim = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    return state, optim
