"""Train small cases of every family checked under several processes and save their weights:
``python tests/e2e/ddp_cases.py OUT`` in one process, or under torchrun in several (the first process
writes ``OUT/<case>.safetensors``). tests/e2e/test_distributed.py compares the two.

Cases: two-stage fine-tuning, feature extraction and adapters (phases that freeze parts of the
model), each domain-adaptation method of ``DDP_STRATEGIES`` (target rows drawn per batch, terms of
the gathered batch, the discriminator's gradients averaged), the multi-task weighters checked there
(per-task gradients of the whole batch for the gradient-based ones) and EWC on a two-task stream (the
Fisher estimated in every process) and plain fine-tuning of a stream with a head per task. 60 rows in batches of 7: two processes take 4 and 3 rows of each
batch and 2 and 2 of the last, so uneven shares are weighted.
"""

import os
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from transferkit.adapt import use_unlabelled
from transferkit.backbones import create_backbone
from transferkit.config import TrainSettings
from transferkit.continual import create_continual_strategy
from transferkit.data.datasets import ArrayDataset
from transferkit.data.streams import split_classes
from transferkit.engine.trainer import Trainer
from transferkit.finetune import create_strategy
from transferkit.heads import create_head
from transferkit.model import TransferModel
from transferkit.multitask.data import MultiTaskArrays
from transferkit.multitask.models import HardSharing
from transferkit.multitask.step import MultiTaskStep
from transferkit.multitask.weighters import create_weighter
from transferkit.runs.learner import train_stream

TRANSFER = ["two_stage", "feature_extraction", "adapters"]
DA = ["dan", "coral", "dann", "cdan", "cdan_e", "entropy", "mcc"]
WEIGHTERS = ["equal", "uncertainty", "pcgrad", "cagrad", "imtl_g"]
SETTINGS = TrainSettings(epochs=2, batch_size=7, lr=0.05, optimizer="sgd", momentum=0.9, device="cpu", seed=3)


def rows(n: int = 60, shift: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    return (rng.normal(size=(n, 8)) + 2.0 * np.eye(3, 8)[y] + shift).astype(np.float32), y


def mlp_model(heads: dict[str, int] | None = None):
    torch.manual_seed(0)
    backbone = create_backbone("mlp", in_features=8, hidden=(16,))
    return HardSharing(backbone, heads) if heads else TransferModel(backbone, create_head("linear", 16, 3))


def save(out: Path, case: str, *modules: torch.nn.Module) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        tensors = {f"{i}.{k}": v.detach().clone().contiguous()
                   for i, m in enumerate(modules) for k, v in m.state_dict().items() if v.is_floating_point()}
        save_file(tensors, out / f"{case}.safetensors")


def main(out: Path) -> None:
    torch.set_num_threads(1)
    x, y = rows()
    source = ArrayDataset(x, y, name="source")
    target = ArrayDataset(rows(shift=1.0, seed=1)[0], np.zeros(60, dtype=np.int64), name="target")
    for name in TRANSFER:  # phases that freeze parts of the model (left out of DDP's reduction)
        model, strategy = mlp_model(), create_strategy(name)
        Trainer(SETTINGS, progress=False).fit(model, strategy, source)
        save(out, name, model)
    for name in DA:
        model, strategy = mlp_model(), create_strategy(name)
        use_unlabelled(strategy, target)
        Trainer(SETTINGS, progress=False).fit(model, strategy, source)
        save(out, name, model, strategy)
    tasks = MultiTaskArrays(x, {"a": y, "b": (x[:, 3] > 0).astype(np.int64)})
    for name in WEIGHTERS:
        model = mlp_model({"a": 3, "b": 2})
        model.weighter = create_weighter(name, ["a", "b"])
        Trainer(SETTINGS, progress=False).fit(model, MultiTaskStep(), tasks)
        save(out, f"multitask-{name}", model)
    x4, y4 = rows(56, seed=2)
    y4 = np.arange(56) % 4
    x4 = x4 + 2.0 * np.eye(4, 8)[y4].astype(np.float32)
    stream = split_classes(ArrayDataset(x4, y4, name="four"), ArrayDataset(x4, y4, name="four"), 2)
    torch.manual_seed(0)
    model = TransferModel(create_backbone("mlp", in_features=8, hidden=(16,)), create_head("linear", 16, 4))
    strategy = create_continual_strategy("ewc", weight=50.0)
    train_stream(model, strategy, stream, SETTINGS, progress=False)
    save(out, "ewc", model, strategy)
    heads = split_classes(ArrayDataset(x4, y4, name="four"), ArrayDataset(x4, y4, name="four"), 2, scenario="task",
                          multi_head=True)  # each task trains its own head: the others' get no gradient
    torch.manual_seed(0)
    model = TransferModel(create_backbone("mlp", in_features=8, hidden=(16,)), create_head("linear", 16, 2))
    train_stream(model, create_continual_strategy("naive"), heads, SETTINGS, progress=False)
    save(out, "naive-multihead", model)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
