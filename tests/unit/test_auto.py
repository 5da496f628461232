"""strategy auto: the rule (select/auto.py) on hand-made facts, one test per branch, and its resolution in a run."""

import json

import numpy as np
import pytest
import yaml

from tests.conftest import tiny_config
from transferkit import train
from transferkit.compare import plan
from transferkit.config import parse_config
from transferkit.errors import TransferkitError
from transferkit.select.auto import (ADAPT_MAX_SHOTS, FEW_SHOTS, LARGE_BACKBONE, LOGME_MIN_SHOTS, MCC_WEIGHT, PAD_DISTANT,
                                     Facts, choose)


def facts(**kw) -> Facts:
    return Facts(**({"shots": 3, "num_classes": 10} | kw))


def test_zero_labels_with_unlabelled_target_data_adapt_with_mcc_from_the_source_head():
    c = choose(facts(shots=0, source_head=True, source_data=True, unlabelled=True, pad=1.74))
    assert (c.strategy, c.args, c.model) == ("mcc", {"weight": MCC_WEIGHT}, {"source_head": True})
    assert c.reason == ("No target label, unlabelled target data and a distant domain (A-distance 1.7), so MCC "
                        "domain adaptation (weight 0.3) from the source head.")


def test_zero_labels_without_unlabelled_target_data_is_one_sentence_naming_the_input_and_the_fix():
    with pytest.raises(TransferkitError) as e:
        choose(facts(shots=0, source_data=True))
    msg = str(e.value)
    assert "0 labels per class" in msg and "data.unlabelled" in msg and msg.count(". ") == 0 and msg.endswith(".")


def test_nothing_to_transfer_from_trains_from_scratch():
    c = choose(facts(shots=5, source_model=False))
    assert c.strategy == "scratch"
    assert c.reason == "5 labels per class and no source model (model.weights) or source data, so training from scratch."


def test_source_features_no_better_than_random_ones_train_from_scratch():
    c = choose(facts(source_head=True, logme=-0.5, logme_random=-0.5))
    assert c.strategy == "scratch" and "LogME -0.500 vs -0.500" in c.reason
    assert choose(facts(source_head=True, logme=-0.49, logme_random=-0.5)).strategy == "full"  # strictly better
    # below LOGME_MIN_SHOTS labels per class LogME is not trusted (1 label per class on the demo's digits)
    assert choose(facts(shots=LOGME_MIN_SHOTS - 1, source_head=True, logme=-0.314, logme_random=-0.268)).strategy == "full"


def test_few_labels_a_distant_domain_and_unlabelled_data_adapt_with_the_labels():
    base = facts(source_head=True, source_data=True, unlabelled=True, pad=PAD_DISTANT)
    c = choose(base)
    assert (c.strategy, c.args, c.model) == ("mcc", {"weight": MCC_WEIGHT}, {"source_head": True})
    assert c.reason == ("3 labels per class, a distant domain (A-distance 1.0) and unlabelled target data, so MCC "
                        "domain adaptation (weight 0.3) from the source head.")
    # a close domain, more labels than measured, or no source rows to align: no adaptation
    assert choose(facts(source_head=True, source_data=True, unlabelled=True, pad=PAD_DISTANT - 0.01)).strategy == "full"
    assert choose(facts(shots=ADAPT_MAX_SHOTS + 1, source_data=True, unlabelled=True, pad=1.9)).strategy == "full"
    assert choose(facts(source_head=True, unlabelled=True, pad=1.9)).strategy == "full"


def test_source_data_without_a_source_model_trains_on_both():
    c = choose(facts(source_model=False, source_data=True))
    assert (c.strategy, c.args) == ("full", {})
    assert c.reason.endswith("so training on the source and target rows together.")


def test_a_large_backbone_with_few_labels_is_kept_frozen():
    c = choose(facts(shots=10, num_classes=2, source_head=False, backbone_parameters=22_713_216))
    assert c.strategy == "feature_extraction"
    assert c.reason == ("10 labels per class and a 22.7M-parameter backbone, so feature extraction (frozen backbone, "
                        "cached features).")
    assert choose(facts(shots=51, backbone_parameters=LARGE_BACKBONE)).strategy == "full"
    assert choose(facts(shots=10, backbone_parameters=LARGE_BACKBONE - 1)).strategy == "full"


def test_a_low_budget_chooses_lora():
    c = choose(facts(shots=10, budget="low", source_head=True))
    assert (c.strategy, c.args, c.model) == ("lora", {"r": 4}, {"source_head": True})
    assert c.reason == "10 labels per class and a low parameter budget, so LoRA (r=4)."
    with pytest.raises(TransferkitError, match="budget must be one of normal, low"):
        choose(facts(budget="tiny"))


def test_a_source_head_is_fine_tuned_at_a_tenth_of_the_rate():
    c = choose(facts(shots=1, source_head=True, pad=0.4))
    assert (c.strategy, c.args, c.model) == ("full", {"backbone_lr_scale": 0.1}, {"source_head": True})
    assert c.reason == ("1 label per class, a source head for the same labels and a close domain (A-distance 0.4), "
                        "so full fine-tuning from the source head with the backbone at a tenth of the rate.")


def test_a_new_head_with_very_few_labels_uses_frozen_features_and_more_labels_full_fine_tuning():
    assert choose(facts(shots=FEW_SHOTS)).strategy == "feature_extraction"
    c = choose(facts(shots=2.5))
    assert (c.strategy, c.args, c.model) == ("full", {}, {})
    assert c.reason == "2.5 labels per class and a new head, so full fine-tuning."


def _source_run(tiny_npz, tmp_path):
    cfg = tiny_config(tiny_npz, epochs=3)
    return train(cfg, out=tmp_path / "src", progress=False).run_dir / "model.safetensors"


def test_train_with_auto_writes_the_chosen_strategy_and_its_reason(tiny_npz, tmp_path):
    cfg = tiny_config(tiny_npz, epochs=1)
    cfg["model"]["weights"] = str(_source_run(tiny_npz, tmp_path))
    cfg["data"] |= {"shots": 8, "val_fraction": 0.0}  # 24 rows: enough for the proxy A-distance
    cfg["strategy"] = {"name": "auto"}
    res = train(cfg, out=tmp_path / "auto", progress=False)
    saved = yaml.safe_load((tmp_path / "auto" / "config.yaml").read_text())
    assert saved["strategy"]["name"] == "full" and saved["strategy"]["args"] == {"backbone_lr_scale": 0.1}
    assert saved["model"]["source_head"] is True
    auto = json.loads((tmp_path / "auto" / "summary.json").read_text())["auto"]
    assert auto["reason"] == saved["strategy"]["reason"] and auto["reason"].startswith("8 labels per class, a source head")
    assert auto["facts"]["shots"] == 8.0 and auto["facts"]["logme"] > auto["facts"]["logme_random"]
    assert res.metrics["strategy"] == "full"
    # the data of the run that wrote the weights is the source for the domain distance
    assert 0.0 <= auto["facts"]["pad"] <= 2.0


def test_auto_refuses_unknown_args_before_training(tiny_npz, tmp_path):
    cfg = tiny_config(tiny_npz)
    cfg["strategy"] = {"name": "auto", "args": {"r": 4}}
    with pytest.raises(TransferkitError, match="strategy auto takes only budget"):
        train(cfg, out=tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


def test_compare_plans_auto_as_a_strategy(tiny_npz):
    entries = plan(parse_config(tiny_config(tiny_npz)), ["auto", "full"])
    assert entries["auto"]["strategy"] == "auto" and list(entries) == ["scratch", "auto", "full"]


def test_measured_facts_of_a_run_without_weights_choose_scratch(tiny_npz, tmp_path):
    cfg = tiny_config(tiny_npz, epochs=1)
    cfg["strategy"] = {"name": "auto"}
    res = train(cfg, out=tmp_path / "a", progress=False)
    auto = res.metrics["auto"]
    assert auto["strategy"] == "scratch" and auto["facts"]["logme"] is None and auto["facts"]["pad"] is None
    n_train = res.metrics["train_examples"]
    assert np.isclose(auto["facts"]["shots"], n_train / 3)
