"""Collective operations in one process (the identity) and what the trainer refuses under several
processes before training. tests/e2e/test_distributed.py checks the operations across processes."""

import pytest
import torch

from transferkit import collective
from transferkit.backbones import create_backbone
from transferkit.continual import create_continual_strategy
from transferkit.engine.distributed import check_strategy
from transferkit.errors import TransferkitError
from transferkit.finetune import create_strategy
from transferkit.heads import create_head
from transferkit.model import TransferModel
from transferkit.multitask.models import HardSharing
from transferkit.multitask.step import MultiTaskStep
from transferkit.multitask.weighters import create_weighter
from transferkit.strategy import Batch


def test_in_one_process_every_collective_is_the_identity():
    x = torch.randn(5, 3, requires_grad=True)
    assert collective.gather_rows(x) is x
    assert torch.equal(collective.share(torch.arange(7)), torch.arange(7))
    assert collective.total(4) == 4 and collective.processes() == 1 and collective.rank() == 0
    a, b = collective.mean_over_processes([torch.ones(2), torch.full((1,), 3.0)], weight=0.5)
    assert torch.equal(a, torch.full((2,), 0.5)) and torch.equal(b, torch.tensor([1.5]))


def mlp() -> TransferModel:
    return TransferModel(create_backbone("mlp", in_features=8, hidden=(6,)), create_head("linear", 6, 3))


def test_several_processes_refuse_unchecked_strategies_and_adaptation_with_batchnorm():
    check_strategy(mlp(), create_strategy("full+dann"))  # checked: passes
    with pytest.raises(TransferkitError, match="Strategy 'full\\+bss' is not checked.*'bss' is not one of"):
        check_strategy(mlp(), create_strategy("full+bss"))
    with pytest.raises(TransferkitError, match="'er' is not one of"):
        check_strategy(mlp(), create_continual_strategy("er"))
    cnn = TransferModel(create_backbone("small_cnn", in_channels=1, width=4, num_features=8), create_head("linear", 8, 3))
    check_strategy(cnn, create_strategy("full"))  # BatchNorm alone: each process normalises its share (documented)
    with pytest.raises(TransferkitError, match="'coral' aligns batch statistics.*BatchNorm.*train it in one process"):
        check_strategy(cnn, create_strategy("coral"))


def test_several_processes_refuse_unchecked_weighters_and_rows_without_every_label(monkeypatch):
    monkeypatch.setattr(collective, "processes", lambda: 2)
    model = HardSharing(create_backbone("mlp", in_features=8, hidden=(6,)), {"a": 3, "b": 2})
    model.weighter = create_weighter("pcgrad", ["a", "b"])
    MultiTaskStep().prepare_model(model)
    model.weighter = create_weighter("dwa", ["a", "b"])
    with pytest.raises(TransferkitError, match="Weighter 'dwa' is not checked under several processes.*pcgrad"):
        MultiTaskStep().prepare_model(model)
    monkeypatch.setattr(collective, "total", lambda count, device="cpu": count)  # one process stands for both
    full = Batch(torch.zeros(4, 8), {"a": torch.tensor([0, 1, 2, 0]), "b": torch.tensor([1, 0, 1, 0])})
    assert MultiTaskStep().prepare_batch(full) is full
    with pytest.raises(TransferkitError, match="rows without every task's label.*train it in one process"):
        MultiTaskStep().prepare_batch(Batch(torch.zeros(4, 8), {"a": torch.tensor([0, 1, -1, -1]),
                                                                "b": torch.tensor([-1, -1, 1, 0])}))
