import os
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
os.environ.setdefault("TRANSFERKIT_DATA", str(SHARED_DATA))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"The benchmark data folder {SHARED_DATA} is missing; it must sit beside the repository.")
    return SHARED_DATA


@pytest.fixture
def tiny_npz(tmp_path) -> Path:
    """A small learnable 3-class problem as an .npz (8-d vectors)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    x = rng.normal(size=(120, 8)).astype(np.float32) + 2.0 * np.eye(3, 8)[y]
    path = tmp_path / "tiny.npz"
    np.savez(path, x=x, y=y)
    return path


def tiny_config(npz: Path, **train) -> dict:
    return {"data": {"dataset": str(npz), "val_fraction": 0.2, "test_fraction": 0.2},
            "model": {"backbone": "mlp", "backbone_args": {"in_features": 8, "hidden": [16]}},
            "strategy": {"name": "full"},
            "train": {"epochs": 4, "batch_size": 16, "lr": 0.01, "device": "cpu"} | train}
