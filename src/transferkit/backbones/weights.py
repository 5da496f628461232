"""Loading weights safely: safetensors, or ``torch.load(weights_only=True)``; never pickle."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.request
from pathlib import Path

import torch
from torch import nn

from transferkit.errors import TransferkitError

# Keys a classification checkpoint carries for its own head; a backbone drops them.
HEAD_PREFIXES = ("fc.", "classifier.", "head.", "heads.")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise TransferkitError(f"Weights file '{path}' does not exist; check the path.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every reader error becomes one sentence
        raise TransferkitError(
            f"Cannot read weights file '{path}' ({type(e).__name__}); give a .safetensors file or a plain torch state dict."
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TransferkitError(f"Weights file '{path}' does not hold a state dict of tensors; save model.state_dict().")
    return state


def load_into(module: nn.Module, state: dict[str, torch.Tensor], what: str, source: str) -> None:
    """Copy ``state`` into ``module``, with one-sentence errors for missing keys or wrong shapes.

    A ``backbone.`` prefix (a transferkit model file) or ``model.backbone.`` (a ``transferkit meta``
    run's) is stripped, and the rest of such a file dropped; head keys are dropped.
    """
    for prefix in ("model.backbone.", "backbone."):
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            break
    own = module.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.startswith(HEAD_PREFIXES)}
    unexpected = sorted(set(state) - set(own))
    missing = sorted(set(own) - set(state))
    if unexpected or missing:
        detail = f"it lacks '{missing[0]}'" if missing else f"it has the unknown key '{unexpected[0]}'"
        raise TransferkitError(
            f"Weights file '{source}' does not fit {what}: {detail}; use weights saved from the same architecture."
        )
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise TransferkitError(
                f"Weights file '{source}' does not fit {what}: '{k}' has shape {list(v.shape)} in the file but "
                f"{list(own[k].shape)} in the model; use weights saved from the same architecture and settings."
            )
    module.load_state_dict(state)


def load_weights(model: nn.Module, path: Path, partial: bool = False) -> None:
    """Load a transferkit weights file (a run's ``model.safetensors`` or a checkpoint's) into
    ``model``; ``partial`` allows a checkpoint holding a subset of keys."""
    from safetensors.torch import load_file, load_model

    if not path.is_file():
        raise TransferkitError(f"Weights file '{path}' is missing; train the run first or check the path.")
    if partial:
        state = load_file(str(path))
        own = model.state_dict()
        ok = all(k in own and own[k].shape == v.shape for k, v in state.items())
        if ok:
            model.load_state_dict(state, strict=False)
            return
    else:
        try:
            missing, unexpected = load_model(model, str(path), strict=False)
            ok = not missing and not unexpected
        except RuntimeError:  # shape mismatch
            ok = False
    if not ok:
        raise TransferkitError(f"Weights file '{path}' does not fit the model built from its config; re-train the run.")


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_weights(url: str, dest: str | Path, sha256_prefix: str | None = None) -> Path:
    """Download a weights file to ``dest`` (atomically), optionally checking its SHA-256 prefix.

    For users preparing weights ahead of time (e.g. into the torch hub cache); transferkit
    never calls this during training, tests or the demo.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False, suffix=".part") as tmp:
        try:
            with urllib.request.urlopen(url) as r:  # noqa: S310 - user-requested URL
                shutil.copyfileobj(r, tmp)
        except Exception as e:  # noqa: BLE001
            Path(tmp.name).unlink(missing_ok=True)
            raise TransferkitError(f"Cannot download '{url}' ({e}); check the address or copy the file by hand.") from None
    if sha256_prefix and not sha256(tmp.name).startswith(sha256_prefix):
        Path(tmp.name).unlink(missing_ok=True)
        raise TransferkitError(f"'{url}' downloaded with the wrong checksum (expected {sha256_prefix}…); download it again.")
    Path(tmp.name).replace(dest)
    return dest
