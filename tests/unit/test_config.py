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
