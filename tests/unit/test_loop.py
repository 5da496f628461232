"""The training loop's phases, early stopping, gradient accumulation and composed phases: each
compared with a run that must come out the same (an uninterrupted run, a larger batch)."""

import numpy as np
import pytest
import torch

from transferkit.backbones import create_backbone
from transferkit.config import TrainSettings
from transferkit.data import ArrayDataset
from transferkit.engine.trainer import Trainer
from transferkit.errors import TransferkitError
from transferkit.finetune import create_strategy
from transferkit.heads import create_head
from transferkit.model import TransferModel
from tests.unit.test_strategies import tiny_data, tiny_model
from tests.unit.test_trainer import Interrupt, _stop_after


def _mlp(seed=0):
    torch.manual_seed(seed)
    return TransferModel(create_backbone("mlp", in_features=8, hidden=(6,)), create_head("linear", 6, 3))


def _vectors(n=20):
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    return ArrayDataset((rng.normal(size=(n, 8)) + 2.0 * np.eye(3, 8)[y]).astype(np.float32), y)


def _dir(path):
    path.mkdir()
    return path


# Monitoring the training loss with mode "max" makes every epoch after the first a bad one (the
# loss falls), so the early stops happen at known epochs.
def _patient(**kw):
    return TrainSettings(**({"epochs": 8, "batch_size": 8, "lr": 0.05, "device": "cpu", "monitor": "train/task",
                             "mode": "max", "patience": 2, "restore_best": False} | kw))


def test_an_early_stop_ends_the_head_phase_and_fine_tuning_still_runs():
    history = Trainer(_patient(patience=1), progress=False).fit(
        _mlp(), create_strategy("two_stage"), _vectors(), _vectors(9))  # head: epochs 1-4, finetune: 5-8
    assert [(r["epoch"], r["phase"]) for r in history] == [(1, "head"), (2, "head"), (5, "finetune")]


def test_a_resumed_run_keeps_its_patience_count(tmp_path):
    """One phase, patience 2: epoch 1 is the best, epochs 2 and 3 are bad, so the run stops after
    epoch 3, interrupted after epoch 2 or not (the count of bad epochs is in the checkpoint)."""
    full_model, model = _mlp(), _mlp()
    full = Trainer(_patient(), _dir(tmp_path / "full"), progress=False).fit(full_model, create_strategy("full"), _vectors())
    with pytest.raises(Interrupt):
        Trainer(_patient(), _dir(tmp_path / "r"), progress=False, callbacks=[_stop_after(2)]).fit(
            _mlp(), create_strategy("full"), _vectors())
    resumed = Trainer(_patient(), tmp_path / "r", progress=False).fit(model, create_strategy("full"), _vectors(),
                                                                      resume=True)
    assert [r["epoch"] for r in full] == [r["epoch"] for r in resumed] == [1, 2, 3]
    for (k, a), b in zip(full_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("interrupt_after", [2, 3, 5])
def test_a_resumed_run_stops_where_the_uninterrupted_one_does(tmp_path, interrupt_after):
    """Patience 2: the head phase stops after epoch 3, fine-tuning after epoch 6 (its second bad
    epoch); a run interrupted inside or right after a stopped phase goes on exactly the same."""
    full_model = _mlp()
    full = Trainer(_patient(), _dir(tmp_path / "full"), progress=False).fit(full_model, create_strategy("two_stage"),
                                                                      _vectors(), _vectors(9))
    assert [r["epoch"] for r in full] == [1, 2, 3, 5, 6]
    with pytest.raises(Interrupt):
        Trainer(_patient(), _dir(tmp_path / "r"), progress=False, callbacks=[_stop_after(interrupt_after)]).fit(
            _mlp(), create_strategy("two_stage"), _vectors(), _vectors(9))
    model = _mlp()
    resumed = Trainer(_patient(), tmp_path / "r", progress=False).fit(model, create_strategy("two_stage"), _vectors(),
                                                                      _vectors(9), resume=True)
    assert [r["epoch"] for r in resumed] == [1, 2, 3, 5, 6]
    for (k, a), b in zip(full_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k


def _sgd(**kw):
    return TrainSettings(**({"epochs": 3, "lr": 0.1, "optimizer": "sgd", "momentum": 0.0, "device": "cpu"} | kw))


def test_accumulating_two_batches_of_b_equals_one_batch_of_2b():
    """20 rows: batches of 8, 8, 4 against windows of 4+4, 4+4 and a last window of one batch of 4
    (which must step too, and leave no gradient behind for the next epoch)."""
    big, small = _mlp(), _mlp()
    Trainer(_sgd(batch_size=8), progress=False).fit(big, create_strategy("full"), _vectors())
    Trainer(_sgd(batch_size=4, grad_accum=2), progress=False).fit(small, create_strategy("full"), _vectors())
    for (k, a), b in zip(big.state_dict().items(), small.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)


def test_gradient_accumulation_resumes_exactly(tmp_path):
    settings = _sgd(batch_size=4, grad_accum=2, optimizer="adamw", lr=0.01)  # 5 batches per epoch: an odd tail
    full = _mlp()
    Trainer(settings, _dir(tmp_path / "full"), progress=False).fit(full, create_strategy("full"), _vectors(), _vectors(9))
    with pytest.raises(Interrupt):
        Trainer(settings, _dir(tmp_path / "r"), progress=False, callbacks=[_stop_after(1)]).fit(
            _mlp(), create_strategy("full"), _vectors(), _vectors(9))
    model = _mlp()
    Trainer(settings, tmp_path / "r", progress=False).fit(model, create_strategy("full"), _vectors(), _vectors(9),
                                                          resume=True)
    for (k, a), b in zip(full.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k


def test_partial_plus_lora_trains_every_lora_weight():
    """partial (last stage) + LoRA (every layer): the phases merge, so the LoRA weights of the
    early stages train too, while their base weights stay at the source values."""
    model = tiny_model()
    strategy = create_strategy("partial+lora", partial={"k": 1}, lora={"r": 2})
    base = {k: v.clone() for k, v in model.backbone.stages()[0].state_dict().items()}
    Trainer(TrainSettings(epochs=2, batch_size=8, lr=0.05, device="cpu"), progress=False).fit(model, strategy, tiny_data())
    lora_b = {k: v for k, v in model.backbone.state_dict().items() if "lora_B" in k}
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b.values()), [k for k, v in lora_b.items() if v.abs().sum() == 0]
    for k, v in model.backbone.stages()[0].state_dict().items():
        if "lora_" not in k:  # the first stage's own weights are frozen
            assert torch.equal(v, base[k.replace(".base_layer", "")]), k


def test_phases_that_do_not_line_up_are_refused_naming_both_strategies():
    with pytest.raises(TransferkitError, match="'two_stage'.*'lora'"):
        Trainer(TrainSettings(epochs=2, batch_size=8, device="cpu"), progress=False).fit(
            tiny_model(), create_strategy("two_stage+lora"), tiny_data())


# -- the strategy contract's backward and after_epoch hooks (new in this version) ------------

def _step(calls):
    from transferkit.strategy import Step

    return Step(model=None, batch=None, out=None, index=0, backward=calls.append)


def _strategies():
    from transferkit.strategy import Strategy

    class Half(Strategy):
        name = "half"

        def task_weight(self):
            return 0.5

    class Own(Strategy):
        name = "own"

        def backward(self, losses, terms, step):
            total = 3 * losses["a"]
            step.backward(total)
            return {"own/total": total}, total

    return Half, Own


def test_the_default_backward_weighs_the_task_losses_and_adds_the_terms():
    Half, _ = _strategies()
    calls, losses, terms = [], {"a": torch.tensor(2.0), "b": torch.tensor(4.0)}, {"half/p": torch.tensor(1.0)}
    logged, total = Half().backward(losses, terms, _step(calls))
    assert float(total) == 0.5 * (2.0 + 4.0) + 1.0 and calls == [total] and logged == losses | terms


def test_compose_takes_backward_from_its_one_part_that_forms_the_gradient():
    from transferkit.strategy import Compose

    Half, Own = _strategies()
    calls, losses = [], {"a": torch.tensor(2.0)}
    logged, total = Compose([Half(), Own()]).backward(losses, {}, _step(calls))
    assert float(total) == 6.0 and list(logged) == ["own/total"] and calls == [total]
    _, total = Compose([Half(), Half()]).backward(losses, {"t": torch.tensor(1.0)}, _step(calls))
    assert float(total) == 0.25 * 2.0 + 1.0  # no part forms it: the default, with the product of the task weights
    with pytest.raises(TransferkitError, match="'own' and 'own' both form the gradient"):
        Compose([Compose([Own()]), Own()])


def test_merged_phases_keep_the_first_parts_rate_for_a_shared_parameter():
    from transferkit.strategy import Phase, merge_phases

    p1, p2, p3 = (torch.nn.Parameter(torch.zeros(1)) for _ in range(3))
    a = [Phase("train", 2, [{"params": [p1, p2], "lr": 0.1}])]
    merged = merge_phases(a, [Phase("other", 2, [{"params": [p2, p3], "lr": 1.0}])], "a", "b")
    assert [(ph.name, ph.epochs) for ph in merged] == [("train", 2)]
    assert [([id(p) for p in g["params"]], g["lr"]) for g in merged[0].groups] == [([id(p1), id(p2)], 0.1), ([id(p3)], 1.0)]
    with pytest.raises(TransferkitError, match="'a'.*'b'"):
        merge_phases(a, [Phase("other", 3, [{"params": [p3], "lr": 1.0}])], "a", "b")


def test_after_epoch_runs_once_per_epoch():
    from transferkit.strategy import Strategy

    class Count(Strategy):
        epochs = 0

        def after_epoch(self, model):
            Count.epochs += 1

    Trainer(TrainSettings(epochs=3, batch_size=8, device="cpu"), progress=False).fit(_mlp(), Count(), _vectors())
    assert Count.epochs == 3


def test_a_strategy_that_sets_gradients_refuses_accumulation_before_training():
    from transferkit.multitask.models import HardSharing
    from transferkit.multitask.step import MultiTaskStep
    from transferkit.multitask.weighters import create_weighter

    model = HardSharing(create_backbone("mlp", in_features=8, hidden=(6,)), {"a": 3})
    model.weighter = create_weighter("pcgrad", ["a"])
    with pytest.raises(TransferkitError, match="'multitask' sets the gradients itself.*grad_accum to 1"):
        Trainer(TrainSettings(epochs=1, grad_accum=2, device="cpu"), progress=False).fit(model, MultiTaskStep(), _vectors())
    with pytest.raises(TransferkitError, match="needs a weighter"):
        Trainer(TrainSettings(epochs=1, device="cpu"), progress=False).fit(_mlp(), MultiTaskStep(), _vectors())
