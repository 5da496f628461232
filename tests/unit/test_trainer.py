import json

import numpy as np
import pytest
import torch

from transferkit import train
from transferkit.api import load_run
from transferkit.errors import TrainingDiverged, TransferkitError
from tests.conftest import tiny_config


class Interrupt(Exception):
    pass


def _stop_after(n):
    def cb(record):
        if record["epoch"] == n:
            raise Interrupt
    return cb


@pytest.mark.parametrize("strategy", ["full", "two_stage", "feature_extraction", "l2sp", "discriminative", "lora", "adapters",
                                      "joint", "delta"])
def test_resume_after_interrupt_gives_identical_weights(tiny_npz, tmp_path, strategy):
    args = {"source": str(tiny_npz), "weight": 0.3, "weight_end": 0.6, "ramp_steps": 10} if strategy == "joint" else {}
    cfg = tiny_config(tiny_npz) | {"strategy": {"name": strategy, "args": args}}
    cfg["model"]["backbone_args"]["dropout"] = 0.2  # the random stream must replay too
    full = train(cfg, out=tmp_path / "full", progress=False)
    with pytest.raises(Interrupt):
        train(cfg, out=tmp_path / "resumed", progress=False, callbacks=[_stop_after(2)])
    assert len((tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()) == 2
    resumed = train(cfg, out=tmp_path / "resumed", resume=True, progress=False)
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert len((tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()) == 4


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_npz, tmp_path):
    cfg = tiny_config(tiny_npz, lr=1e30, epochs=6)
    cfg["train"]["optimizer"] = "sgd"
    with pytest.raises(TrainingDiverged, match="NaN or infinite") as err:
        train(cfg, out=tmp_path / "run", progress=False)
    ckpts = tmp_path / "run" / "checkpoints"
    if "no epoch finished" not in str(err.value):
        latest = (ckpts / "LATEST").read_text()
        from safetensors.torch import load_file

        weights = load_file(ckpts / latest / "model.safetensors")
        assert all(torch.isfinite(v).all() for v in weights.values())
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_early_stopping_and_metrics_file(tiny_npz, tmp_path):
    res = train(tiny_config(tiny_npz, epochs=30, patience=2, monitor="val/loss", mode="min", lr=0.2), out=tmp_path / "r",
                progress=False)
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == len(res.history) < 30
    assert {"epoch", "train/task", "val/loss", "val/accuracy", "seconds"} <= set(rows[0])


def test_run_dir_is_never_overwritten_without_flag(tiny_npz, tmp_path):
    out = tmp_path / "r"
    train(tiny_config(tiny_npz, epochs=1), out=out, progress=False)
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(TransferkitError, match="already exists; pass --overwrite"):
        train(tiny_config(tiny_npz, epochs=2), out=out, progress=False)
    assert (out / "model.safetensors").read_bytes() == before
    train(tiny_config(tiny_npz, epochs=2), out=out, overwrite=True, progress=False)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_labels_outside_the_head_are_rejected_before_training(tiny_npz, tmp_path):
    cfg = tiny_config(tiny_npz)
    cfg["model"]["num_classes"] = 2
    with pytest.raises(TransferkitError, match="label 2 but the head has 2 classes"):
        train(cfg, out=tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


def test_loaded_run_predicts_like_the_trained_model(tiny_npz, tmp_path):
    res = train(tiny_config(tiny_npz), out=tmp_path / "r", progress=False)
    run = load_run(tmp_path / "r")
    x = np.load(tiny_npz)["x"][:5].astype(np.float32)
    res.model.eval()
    expected = torch.softmax(res.model(torch.as_tensor(x)).logits, -1).detach().numpy()
    assert np.allclose(run.predict(x), expected, atol=1e-6)
    assert (tmp_path / "r" / "report.html").read_text().count("data:image/png;base64") == 1


def test_checkpoints_skip_a_frozen_backbone(tiny_npz, tmp_path):
    from safetensors.torch import load_file

    cfg = tiny_config(tiny_npz) | {"strategy": {"name": "feature_extraction"}}
    train(cfg, out=tmp_path / "fe", progress=False)
    latest = (tmp_path / "fe" / "checkpoints" / "LATEST").read_text()
    keys = set(load_file(tmp_path / "fe" / "checkpoints" / latest / "model.safetensors"))
    assert keys and all(k.startswith("heads.") for k in keys)
    full = set(load_file(tmp_path / "fe" / "model.safetensors"))  # the final file is complete
    assert any(k.startswith("backbone.") for k in full)


def test_gradient_accumulation_and_bf16_autocast_run_on_cpu(tiny_npz, tmp_path):
    res = train(tiny_config(tiny_npz, grad_accum=2, mixed_precision="bf16", epochs=3), out=tmp_path / "r",
                progress=False)
    assert all(np.isfinite(r["train/task"]) for r in res.history)
    assert res.history[-1]["train/task"] < res.history[0]["train/task"]


def test_cuda_request_without_gpu_is_a_clear_error(tiny_npz, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(TransferkitError, match="no GPU is visible"):
        train(tiny_config(tiny_npz, device="cuda"), out=tmp_path / "r", progress=False)


def test_sharded_batches_give_every_row_of_each_batch_to_one_process_and_drop_a_batch_too_small_to_share():
    from transferkit.engine.trainer import EpochSampler, ShardedBatches, TensorBatches

    batches = TensorBatches(EpochSampler(23, seed=0), 5)  # 4 batches of 5 and one of 3
    shards = [ShardedBatches(batches, rank, 2) for rank in range(2)]
    parts = [list(s) for s in shards]
    assert [len(s) for s in shards] == [5, 5]
    for whole, a, b in zip(batches, *parts):
        assert torch.equal(torch.cat([a, b]), whole) and len(a) - len(b) in (0, 1)
    lists = list(ShardedBatches(batches, 1, 2, as_lists=True))
    assert lists == [p.tolist() for p in parts[1]]
    tiny = TensorBatches(EpochSampler(11, seed=0), 5)  # ... and a last batch of 1 row for 3 processes
    assert [len(ShardedBatches(tiny, r, 3)) for r in range(3)] == [2, 2, 2]
    assert sorted(i for r in range(3) for b in ShardedBatches(tiny, r, 3) for i in b.tolist()) == sorted(
        i for b in list(tiny)[:2] for i in b.tolist())
