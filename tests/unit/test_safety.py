"""Weights are only ever read with safetensors or torch.load(weights_only=True)."""

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "transferkit"


def test_every_torch_load_is_weights_only():
    calls = []
    for path in SRC.rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"torch\.load\(", line):
                calls.append((path.name, n, "weights_only=True" in line))
    assert calls, "expected at least one torch.load call to check"
    assert all(ok for *_, ok in calls), [c for c in calls if not c[2]]


def test_no_pickle_or_numpy_pickle_loading():
    text = "\n".join(p.read_text() for p in SRC.rglob("*.py"))
    assert "import pickle" not in text and "allow_pickle=True" not in text
