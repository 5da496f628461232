import os
from pathlib import Path

# Under pytest-xdist (`make test` runs one worker per core) each worker, and every process it starts,
# keeps to one thread: two workers with two threads each would oversubscribe the cores many times over.
XDIST_WORKER = "PYTEST_XDIST_WORKER" in os.environ
if XDIST_WORKER:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"

import numpy as np  # noqa: E402 - after the thread settings, which numpy's BLAS reads at import
import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
os.environ.setdefault("TRANSFERKIT_DATA", str(SHARED_DATA))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(1 if XDIST_WORKER else max(1, min(2, os.cpu_count() or 1)))
if XDIST_WORKER:  # numpy's BLAS too, in case a plugin imported numpy before the variables above were set
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


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
