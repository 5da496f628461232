"""Fuzzing the config parser (YAML text, --set overrides): a config either validates with every given
value kept, or is refused with a TransferkitError of one line, never another exception. Fixed budgets."""

from __future__ import annotations

import copy
import math
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transferkit.config import ContinualConfig, MetaConfig, MultitaskConfig, RunConfig, load_config, parse_config
from transferkit.errors import TransferkitError

SCHEMAS = [RunConfig, ContinualConfig, MultitaskConfig, MetaConfig]


def budget(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def refused(e: TransferkitError) -> None:
    msg = str(e)
    assert msg and "\n" not in msg and msg.endswith((".", "?")), msg


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=8), st.sampled_from(["rest", "all", "max", "min", "sgd", "cpu", "1e-3", "3"]))


def _keys(schema) -> list[tuple[str, ...]]:
    """Every (section, key) path of ``schema``, and the top-level keys."""
    out = []
    for name, f in schema.model_fields.items():
        sub = getattr(f.annotation, "model_fields", None)
        out += [(name, k) for k in sub] if sub else [(name,)]
    return out


@st.composite
def raw_configs(draw):
    schema = draw(st.sampled_from(SCHEMAS))
    raw: dict = {"data": {"dataset": "x.npz"}} if schema in (RunConfig, MetaConfig) else {}
    for path in draw(st.lists(st.sampled_from(_keys(schema) + [("train", "epoch"), ("nope",)]), max_size=4)):
        node = raw
        for p in path[:-1]:
            node = node.setdefault(p, {}) if isinstance(node.get(p, {}), dict) else node
        node[path[-1]] = draw(st.one_of(SCALARS, st.lists(SCALARS, max_size=2),
                                        st.dictionaries(st.text(max_size=3), SCALARS, max_size=2)))
    return schema, raw


def same(given_, stored) -> bool:
    """Whether a validated value is the value given (numbers may be given as YAML strings, e.g. 1e-3)."""
    if isinstance(given_, dict) and isinstance(stored, dict):
        return given_.keys() == stored.keys() and all(same(given_[k], stored[k]) for k in given_)
    if isinstance(given_, list) and isinstance(stored, list):
        return len(given_) == len(stored) and all(same(a, b) for a, b in zip(given_, stored))
    if isinstance(given_, bool) or isinstance(stored, bool):
        return given_ is stored
    if isinstance(stored, (int, float)) and isinstance(given_, (int, float, str)):
        try:
            return math.isfinite(float(given_)) and float(given_) == float(stored)
        except ValueError:
            return False
    return given_ == stored


def _check_kept(raw: dict, cfg) -> None:
    dumped = cfg.model_dump()
    for top, value in raw.items():
        if isinstance(value, dict) and isinstance(dumped[top], dict) and top not in ("compare",):
            for k, v in value.items():
                assert same(v, dumped[top][k]), (top, k, v, dumped[top][k])
        else:
            assert same(value, dumped[top]) or isinstance(value, dict), (top, value, dumped[top])


@budget(300)
@given(raw_configs())
def test_config_mappings_validate_with_values_kept_or_are_refused(case):
    schema, raw = case
    before = copy.deepcopy(raw)
    try:
        cfg = parse_config(raw, schema=schema)
    except TransferkitError as e:
        refused(e)
        return
    assert raw == before  # the caller's mapping is not changed
    _check_kept(raw, cfg)


@budget(200)
@given(st.sampled_from(SCHEMAS), st.lists(st.tuples(
    st.sampled_from([".".join(p) for p in _keys(RunConfig) + _keys(ContinualConfig) + _keys(MetaConfig)]
                    + ["", "train..lr", "a.b.c"]),
    st.one_of(SCALARS.map(lambda v: yaml.safe_dump(v, default_flow_style=True).removesuffix("\n...\n").strip()),
              st.text(max_size=10))), max_size=3))
def test_overrides_apply_the_yaml_value_or_are_refused(schema, sets):
    raw = {"data": {"dataset": "x.npz"}} if schema in (RunConfig, MetaConfig) else {}
    overrides = [f"{k}={v}" for k, v in sets]
    try:
        cfg = parse_config(raw, overrides=overrides, schema=schema)
    except TransferkitError as e:
        refused(e)
        return
    dumped = cfg.model_dump()
    last = {k: v for k, v in sets}  # a later --set of the same key wins
    for key, text in last.items():
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        node = dumped
        for p in key.split("."):
            node = node[p]
        assert same(value, node), (key, text, node)


@budget(300)
@given(st.one_of(st.text(max_size=60), st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
                 raw_configs().map(lambda c: yaml.safe_dump(c[1])) .map(lambda s: s + "\ntrain: {epochs: 2}\n")),
       st.booleans())
def test_any_yaml_file_loads_or_is_refused(text, as_bytes):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.yaml"
        if as_bytes:
            path.write_bytes(text.encode("utf-8", "surrogatepass")[:40] + b"\xff\xfe")
        else:
            path.write_text(text, encoding="utf-8")
        try:
            load_config(path)
        except TransferkitError as e:
            refused(e)
