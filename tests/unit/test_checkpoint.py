"""Epoch checkpoints: durable (fsync before each rename), fixed strategy state written once,
and every piece of training state (a weighter's loss history) in the round trip."""

import os
from pathlib import Path

import pytest
import torch

from transferkit.engine import checkpoint as ckpt
from transferkit.engine.trainer import Trainer
from transferkit.finetune import DELTA, L2SP
from tests.unit.test_strategies import settings, tiny_data, tiny_model


def _fd_path(fd: int) -> Path:
    return Path(os.readlink(f"/proc/self/fd/{fd}"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name a file descriptor")
def test_checkpoint_files_and_folders_are_flushed_before_the_rename_that_publishes_them(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", _fd_path(fd))), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", Path(a), Path(b))), real_replace(a, b))[1])
    model, strategy = tiny_model(), L2SP(weight=0.1)
    strategy.prepare_model(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    root = tmp_path / "checkpoints"
    final = ckpt.save_checkpoint(root, 0, model, optimizer, {"epoch": 0}, set(), set(model.state_dict()), strategy)
    tmp = root / ".epoch-0000.tmp"
    publish = events.index(("replace", tmp, final))
    flushed_before = {e[1] for e in events[:publish] if e[0] == "fsync"}
    assert {tmp / ckpt.MODEL_FILE, tmp / "optimizer.pt", tmp / "state.json", tmp} <= flushed_before
    fixed = root / ckpt.FIXED_STRATEGY_FILE  # L2-SP's anchors
    assert ("replace", root / f".{ckpt.FIXED_STRATEGY_FILE}.tmp", fixed) in events[:publish]
    assert ("fsync", root) in events[publish + 1:]  # the folder holding the new name
    latest = events.index(("replace", root / "LATEST.tmp", root / "LATEST"))
    assert ("fsync", root / "LATEST.tmp") in events[publish:latest] and ("fsync", root) in events[latest + 1:]


def test_save_weights_flushes_the_file_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", _fd_path(fd))), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", Path(a), Path(b))), real_replace(a, b))[1])
    ckpt.save_weights(tiny_model(), tmp_path / "model.safetensors")
    tmp = tmp_path / "model.safetensors.tmp"
    assert events[:2] == [("fsync", tmp), ("replace", tmp, tmp_path / "model.safetensors")]
    assert ("fsync", tmp_path) in events[2:]


def test_a_frozen_source_copy_is_written_once_per_run_and_read_back_with_every_checkpoint(tmp_path, monkeypatch):
    written = []
    real_save = ckpt.save_file
    monkeypatch.setattr(ckpt, "save_file", lambda state, path: (written.append((Path(path).name, set(state))),
                                                                real_save(state, path))[1])
    strategy = DELTA(weight=0.1)
    Trainer(settings(epochs=3), tmp_path, progress=False).fit(tiny_model(), strategy, tiny_data())
    with_source = [name for name, keys in written if any(k.startswith("source.") for k in keys)]
    assert with_source == [f".{ckpt.FIXED_STRATEGY_FILE}.tmp"]  # once, not once per epoch
    assert sum(name == ckpt.MODEL_FILE for name, _ in written) == 3
    latest = ckpt.latest_checkpoint(tmp_path / "checkpoints")
    fresh_model = tiny_model(seed=3)  # another source: the checkpoint's must come back
    fresh = DELTA(weight=0.1)
    fresh.prepare_model(fresh_model)
    ckpt.read_checkpoint(latest, fresh_model, fresh)
    for k, v in strategy.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k


def test_a_missing_fixed_state_file_is_a_clear_error(tmp_path):
    from transferkit.errors import TransferkitError

    Trainer(settings(epochs=1), tmp_path, progress=False).fit(tiny_model(), L2SP(weight=0.1), tiny_data())
    assert (tmp_path / "checkpoints" / ckpt.FIXED_STRATEGY_FILE).is_file()
    (tmp_path / "checkpoints" / ckpt.FIXED_STRATEGY_FILE).unlink()
    fresh_model, fresh = tiny_model(), L2SP(weight=0.1)
    fresh.prepare_model(fresh_model)
    with pytest.raises(TransferkitError, match="lacks the strategy state 'anchor__"):
        ckpt.read_checkpoint(ckpt.latest_checkpoint(tmp_path / "checkpoints"), fresh_model, fresh)


@pytest.mark.parametrize("name", ["dwa", "gradnorm"])
def test_a_resumed_multitask_run_keeps_the_weighters_state(tmp_path, name):
    """DWA's loss history (a module without parameters) and GradNorm's initial losses go into the
    epoch checkpoints: the resumed run weighs the tasks as the uninterrupted one does."""
    from transferkit.backbones import create_backbone
    from transferkit.multitask.models import HardSharing
    from transferkit.multitask.step import MultiTaskStep
    from transferkit.multitask.weighters import create_weighter
    from tests.unit.test_multitask import _two_task_data

    def run(out, epochs, resume=False):
        torch.manual_seed(0)
        model = HardSharing(create_backbone("mlp", in_features=6, hidden=(8,)), {"sign": 2, "value": 1},
                            tasks={"value": "regression"})
        model.weighter = create_weighter(name, ["sign", "value"])
        s = settings(epochs=epochs, batch_size=64, lr=0.05)
        out.mkdir(exist_ok=True)
        return Trainer(s, out, progress=False).fit(model, MultiTaskStep(), _two_task_data(), resume=resume)

    full = run(tmp_path / "full", 4)
    run(tmp_path / "cut", 2)
    resumed = run(tmp_path / "cut", 4, resume=True)
    assert [r["train/weight/sign"] for r in resumed[2:]] == pytest.approx([r["train/weight/sign"] for r in full[2:]])
    assert full[2]["train/weight/sign"] != pytest.approx(1.0)  # the state matters by then
