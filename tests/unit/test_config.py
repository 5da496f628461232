import pytest

from transferkit.config import load_config, parse_config
from transferkit.errors import TransferkitError

BASE = {"data": {"dataset": "mnist_usps:usps"}}


def test_defaults_and_overrides():
    cfg = parse_config(dict(BASE), overrides=["train.epochs=3", "strategy.name=two_stage", "model.backbone_args.width=8"])
    assert cfg.train.epochs == 3 and cfg.strategy.name == "two_stage" and cfg.model.backbone_args == {"width": 8}


def test_unknown_key_suggests_the_known_one():
    with pytest.raises(TransferkitError, match="unknown config key 'train.epoch'. Did you mean 'epochs'"):
        parse_config({**BASE, "train": {"epoch": 3}})


def test_wrong_type_names_the_key():
    with pytest.raises(TransferkitError, match="'train.lr'"):
        parse_config({**BASE, "train": {"lr": "fast"}})


def test_missing_section_is_named():
    with pytest.raises(TransferkitError, match="'data' is required"):
        parse_config({})


def test_bad_yaml_names_the_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  dataset: [unclosed\n")
    with pytest.raises(TransferkitError, match="not valid YAML at line"):
        load_config(path)


def test_bad_override_form():
    with pytest.raises(TransferkitError, match="key=value"):
        parse_config(dict(BASE), overrides=["train.epochs"])


def test_true_false_for_a_number_is_refused_not_read_as_1_or_0():
    with pytest.raises(TransferkitError, match="'train.epochs': true/false is not allowed here"):
        parse_config(dict(BASE), overrides=["train.epochs=yes"])
    with pytest.raises(TransferkitError, match="'compare.shots': true/false"):
        parse_config({**BASE, "compare": {"shots": [True, 5]}})
    assert parse_config(dict(BASE), overrides=["train.restore_best=no"]).train.restore_best is False


def test_infinite_or_nan_numbers_are_refused():
    with pytest.raises(TransferkitError, match="'train.lr': Input should be a finite number"):
        parse_config(dict(BASE), overrides=["train.lr=.inf"])
    with pytest.raises(TransferkitError, match="'data.val_fraction'"):
        parse_config({"data": {"dataset": "x", "val_fraction": float("nan")}})


def test_config_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes("data: {dataset: caf\u00e9}\n".encode("latin-1"))
    with pytest.raises(TransferkitError, match="is not UTF-8 text; re-save it as UTF-8"):
        load_config(path)


def test_a_key_given_twice_is_refused_not_overwritten(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {dataset: mnist_usps:usps}\ntrain:\n  epochs: 3\n  lr: 0.1\n  epochs: 5\n")
    with pytest.raises(TransferkitError, match="gives key 'epochs' twice \\(line 5\\); keep one of them"):
        load_config(path)


def test_deeply_nested_yaml_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: " + "[" * 1000)
    with pytest.raises(TransferkitError, match="nested too deeply"):
        load_config(path)


def test_overrides_do_not_change_the_callers_mapping():
    raw = {"data": {"dataset": "mnist_usps:usps"}, "train": {"epochs": 2}}
    cfg = parse_config(raw, overrides=["train.epochs=7", "data.shots=3"])
    assert cfg.train.epochs == 7 and cfg.data.shots == 3
    assert raw == {"data": {"dataset": "mnist_usps:usps"}, "train": {"epochs": 2}}


def test_override_into_a_section_left_empty_in_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\ntrain:\n")
    cfg = load_config(path, ["data.dataset=mnist_usps:usps", "train.epochs=2"])
    assert cfg.data.dataset == "mnist_usps:usps" and cfg.train.epochs == 2


def test_a_switch_takes_true_or_false_only():
    from transferkit.config import parse_config

    for value in (0, 1, "yes"):
        with pytest.raises(TransferkitError, match="true or false"):
            parse_config({"data": {"dataset": "x.npz"}, "train": {"restore_best": value}})
    assert parse_config({"data": {"dataset": "x.npz"}, "model": {"source_head": True}}).model.source_head is True
