import io

import pytest
from rich.console import Console

from transferkit.compare import compare, negative_transfer, parse_shots, plan
from transferkit.config import parse_config
from transferkit.errors import TransferkitError


def test_parse_shots():
    assert parse_shots("1, 5,all") == [1, 5, None]
    with pytest.raises(TransferkitError, match="got 'x'"):
        parse_shots("1,x")
    with pytest.raises(TransferkitError, match="empty"):
        parse_shots(" , ")


def test_negative_transfer_needs_a_gain_beyond_seed_noise():
    scratch = [80.0, 82.0, 84.0]
    assert negative_transfer([79.0, 80.0, 81.0], scratch)  # worse
    assert negative_transfer([82.0, 83.0, 84.0], scratch)  # +1 with std ~1.6: within noise
    assert not negative_transfer([90.0, 91.0, 92.0], scratch)


def _cfg(tiny_npz, **compare):
    from tests.conftest import tiny_config

    return parse_config(tiny_config(tiny_npz, epochs=1) | {"compare": compare})


def test_plan_resolves_strategies_and_variants(tiny_npz):
    cfg = _cfg(tiny_npz, variants={"lora_r2": {"strategy": "lora", "args": {"r": 2}},
                                   "wide": {"strategy": "feature_extraction", "model": {"backbone_args": {"hidden": [32]}},
                                            "train": {"epochs": 7}}})
    entries = plan(cfg, ["full", "lora_r2", "wide", "partial+l2sp"])
    assert list(entries) == ["scratch", "full", "lora_r2", "wide", "partial+l2sp"]
    assert entries["lora_r2"] == {"strategy": "lora", "args": {"r": 2}, "model": {}, "train": {}}
    assert entries["wide"]["model"] == {"backbone_args": {"hidden": [32]}} and entries["wide"]["train"] == {"epochs": 7}
    with pytest.raises(TransferkitError, match="Variants in the config: lora_r2, wide"):
        plan(cfg, ["lora_r3"])
    with pytest.raises(TransferkitError, match="unknown config key 'compare.variants.x.arg'"):
        _cfg(tiny_npz, variants={"x": {"arg": {}}})


def test_compare_reads_its_plan_from_the_config(tiny_npz, tmp_path):
    cfg = _cfg(tiny_npz, strategies=["wide"], shots=[5, "all"], seeds=1,
               variants={"wide": {"strategy": "full", "model": {"backbone_args": {"in_features": 8, "hidden": [32]}}}})
    rows = compare(cfg, out=tmp_path / "c", console=Console(file=io.StringIO()))
    assert {(r["strategy"], r["shots"]) for r in rows} == {(s, k) for s in ("scratch", "wide") for k in (5, "all")}
    wide = next(r for r in rows if r["strategy"] == "wide")
    scratch = next(r for r in rows if r["strategy"] == "scratch")
    assert wide["trainable_parameters"] > scratch["trainable_parameters"]  # the variant's wider model was used


def test_compare_judges_negative_transfer_on_guard_rows_not_the_test_set(tiny_npz, tmp_path):
    cfg = _cfg(tiny_npz, strategies=["full"], shots=[5], seeds=1)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"val_fraction": 0.0})})
    log = io.StringIO()
    rows = compare(cfg, out=tmp_path / "c", console=Console(file=log, width=200))
    assert "Negative-transfer guard: 10 % of the target" in log.getvalue()
    full = next(r for r in rows if r["strategy"] == "full")
    scratch = next(r for r in rows if r["strategy"] == "scratch")
    assert full["baseline"] == "scratch" and 0 <= full["guard_accuracy"] <= 100 and scratch["warning"] == ""
    assert full["negative_transfer"] == bool(full["warning"])
    assert ("Warning:" in log.getvalue()) == full["negative_transfer"]


def test_at_0_labels_the_flag_compares_test_accuracies_after_the_fact():
    from transferkit.compare import summarise

    def runs_of(accs):
        return [{"test/accuracy": a / 100, "guard_correct": None, "trainable_parameters": 10, "train_seconds": 1.0,
                 "train_examples": 0} for a in accs]

    runs = {("dann", 0): runs_of([60.0, 61.0, 59.0]), ("coral", 0): runs_of([70.0, 71.0, 72.0]),
            ("source_only", 0): runs_of([65.0, 65.5, 66.0])}
    rows = {r["strategy"]: r for r in summarise(runs)}
    assert rows["dann"]["baseline"] == "source_only" and rows["dann"]["negative_transfer"]
    assert "60.0 % vs 65.5 %, 3 seeds" in rows["dann"]["warning"] and "after the fact" in rows["dann"]["warning"]
    assert not rows["coral"]["negative_transfer"] and rows["coral"]["warning"] == ""
    assert not rows["source_only"]["negative_transfer"]
