"""The GPU path: device placement, bf16 autocast, and a GPU-trained run that loads on a CPU.
Skipped where no GPU is visible (CI); run on a GPU machine with `pytest tests/unit/test_gpu.py`."""

import pytest
import torch

from transferkit import load_run, train
from tests.conftest import tiny_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("strategy", ["full", "l2sp", "delta", "lora", "feature_extraction"])
@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_trains_on_the_gpu_and_loads_on_the_cpu(tiny_npz, tmp_path, strategy, precision):
    cfg = tiny_config(tiny_npz, device="cuda", mixed_precision=precision, epochs=6)
    cfg["strategy"] = {"name": strategy}
    res = train(cfg, out=tmp_path / "run", progress=False)
    assert res.metrics["test/accuracy"] > 0.6, res.metrics  # 3 separable classes: chance is 0.33
    run = load_run(tmp_path / "run")  # model.safetensors is read onto the CPU
    assert all(p.device.type == "cpu" for p in run.model.parameters())


def test_strategy_state_follows_the_model_to_the_gpu(tiny_npz, tmp_path):
    from transferkit.api import prepare
    from transferkit.config import parse_config
    from transferkit.engine.trainer import Trainer

    cfg = parse_config(tiny_config(tiny_npz, device="cuda", epochs=1) | {"strategy": {"name": "l2sp"}})
    p = prepare(cfg)
    Trainer(cfg.train, progress=False).fit(p.model, p.strategy, p.train)
    assert next(p.model.parameters()).device.type == "cuda"
    assert all(b.device.type == "cuda" for b in p.strategy.buffers())


@pytest.mark.parametrize("name", ["er", "derpp", "agem", "oewc", "si", "lwf", "icarl"])
@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_continual_strategies_keep_their_state_on_the_gpu(tmp_path, name, precision):
    from transferkit.config import TrainSettings
    from transferkit.continual import create_continual_strategy
    from transferkit.runs.learner import train_stream
    from tests.unit.test_continual import tiny_model, tiny_stream

    settings = TrainSettings(epochs=2, batch_size=8, lr=0.05, optimizer="sgd", device="cuda", mixed_precision=precision)
    strategy = create_continual_strategy(name)
    res = train_stream(tiny_model(), strategy, tiny_stream(), settings, run_dir=tmp_path, progress=False)
    assert all(b.device.type == "cuda" for b in strategy.buffers())
    assert res.matrices["task_il"][-1][-1] > 0.6
    assert (tmp_path / "checkpoints" / "task-0001" / "strategy.safetensors").is_file() or not strategy.state_dict()
