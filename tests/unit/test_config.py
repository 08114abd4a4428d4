"""Configuration: conf/defaults.yaml, validation of keys and value types, merging
layers, and `-c key=value` parsing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from storm import ConfigError
from storm import _config as config

DEFAULTS_FILE = Path(__file__).resolve().parents[2] / "conf" / "defaults.yaml"
KEY_LINE = re.compile(r"^([A-Za-z][\w.\-]*)\s*:")


def test_defaults_load() -> None:
    d = config.defaults()
    assert d == yaml.safe_load(DEFAULTS_FILE.read_text())
    assert d["topology.workers"] == 1
    assert d["topology.message.timeout.secs"] == 30
    assert d["topology.acker.executors"] is None
    assert d["topology.enable.message.timeouts"] is True


def test_defaults_returns_a_fresh_copy() -> None:
    d = config.defaults()
    d["topology.workers"] = 99
    d["myapp.x"] = 1
    assert config.defaults()["topology.workers"] == 1
    assert "myapp.x" not in config.defaults()


def test_packaged_defaults_are_the_source_file() -> None:
    assert config._read_defaults_text() == DEFAULTS_FILE.read_text()


def test_every_default_key_has_a_comment_line_above_it() -> None:
    lines = DEFAULTS_FILE.read_text().splitlines()
    keys = []
    for i, line in enumerate(lines):
        m = KEY_LINE.match(line)
        if not m:
            continue
        keys.append(m.group(1))
        above = lines[i - 1].strip() if i > 0 else ""
        assert above.startswith("#") and len(above.lstrip("# ")) > 10, (
            f"conf/defaults.yaml line {i + 1}: key '{m.group(1)}' needs a one-line comment above it"
        )
    # The line scan saw every key YAML sees, each once.
    assert sorted(keys) == sorted(config.defaults())


def test_every_default_key_is_reserved_and_valid() -> None:
    d = config.defaults()
    for key in d:
        assert key.startswith(config.RESERVED_PREFIXES), key
    config.validate(d)


def test_null_defaults_have_declared_types() -> None:
    d = config.defaults()
    nulls = {k for k, v in d.items() if v is None}
    assert nulls == set(config._NULLABLE_TYPES)


# -- validate -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("topology.wokers", "topology.workers"),
        ("topology.message.timeout.sec", "topology.message.timeout.secs"),
        ("topology.max.spout.pendin", "topology.max.spout.pending"),
        ("storm.local.dirs", "storm.local.dir"),
    ],
)
def test_unknown_reserved_key_suggests_the_closest(key: str, suggestion: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.validate({key: 1}, where="topology 'wc' config")
    message = str(info.value)
    assert message.startswith("topology 'wc' config: ")
    assert f"unknown config key '{key}'" in message
    assert f"did you mean '{suggestion}'?" in message


@pytest.mark.parametrize("key", ["nimbus.zzzzzzzzzzzz", "supervisor.qqqqqqqqqqqq", "worker.xyzzy", "topology.qqqqqqqqqq"])
def test_unknown_reserved_key_without_a_close_match(key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"'{key}'") + ".*conf/defaults.yaml"):
        config.validate({key: 1})


@pytest.mark.parametrize(
    "conf",
    [
        {"myapp.x": object()},
        {"myapp.threshold": "anything"},
        {"kafka.topic": ["a"]},
        {"Topology.workers": "not reserved: the prefix is case-sensitive"},
        {"topologyx": 1},
        {"": None},
    ],
)
def test_user_keys_pass_through(conf: dict[str, Any]) -> None:
    config.validate(conf)
    assert config.merge(conf).items() >= conf.items()


def test_keys_must_be_strings() -> None:
    with pytest.raises(ConfigError, match="keys must be strings, got 3"):
        config.validate({3: "x"})  # type: ignore[dict-item]


GOOD_VALUES = [
    ("topology.workers", 4),
    ("topology.debug", True),
    ("topology.stats.sample.rate", 0.5),
    ("topology.stats.sample.rate", 1),  # an int is a fine float
    ("topology.tick.tuple.freq.secs", 1),
    ("topology.tick.tuple.freq.secs", 0.25),
    ("topology.tick.tuple.freq.secs", None),
    ("topology.acker.executors", 0),
    ("topology.acker.executors", None),
    ("topology.max.spout.pending", 1000),
    ("topology.max.spout.pending", None),
    ("topology.name", "wordcount"),
    ("storm.local.dir", "/tmp/storm"),
]


@pytest.mark.parametrize(("key", "value"), GOOD_VALUES)
def test_values_of_the_right_type(key: str, value: Any) -> None:
    config.validate({key: value})


BAD_VALUES = [
    ("topology.workers", True, "int", "bool"),  # bool is an int in Python, not here
    ("topology.workers", False, "int", "bool"),
    ("topology.workers", 2.0, "int", "float"),
    ("topology.workers", "2", "int", "str"),
    ("topology.workers", None, "int", "NoneType"),
    ("topology.debug", 1, "bool", "int"),
    ("topology.debug", "true", "bool", "str"),
    ("topology.stats.sample.rate", True, "int or float", "bool"),
    ("topology.stats.sample.rate", "0.5", "int or float", "str"),
    ("topology.tick.tuple.freq.secs", True, "int or float", "bool"),
    ("topology.acker.executors", True, "int", "bool"),
    ("topology.acker.executors", 1.0, "int", "float"),
    ("topology.max.spout.pending", 10.5, "int", "float"),
    ("topology.name", 7, "str", "int"),
    ("storm.local.dir", ["/tmp"], "str", "list"),
]


@pytest.mark.parametrize(("key", "value", "expected", "got"), BAD_VALUES)
def test_values_of_the_wrong_type(key: str, value: Any, expected: str, got: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.validate({key: value}, where="component 'split' config")
    assert str(info.value) == (
        f"component 'split' config: config key '{key}' must be {expected}, got {got} {value!r}"
    )


@pytest.mark.parametrize(("key", "value"), [
    ("topology.message.timeout.secs", 0), ("topology.message.timeout.secs", -1.5),
    ("topology.max.spout.pending", 0), ("topology.max.spout.pending", -5),
    ("topology.tick.tuple.freq.secs", 0.0), ("topology.tick.tuple.freq.secs", -1),
])
def test_values_that_must_be_positive(key: str, value: Any) -> None:
    # A timeout of 0 or less fails every tree at once; a negative pending limit
    # would stall every spout without a word.
    with pytest.raises(ConfigError) as info:
        config.validate({key: value}, where="topology config")
    assert str(info.value) == f"topology config: config key '{key}' must be > 0, got {value!r}"
    config.validate({key: 1})


# -- merge ---------------------------------------------------------------------------


def test_merge_applies_layers_in_order() -> None:
    cluster = {"topology.workers": 2, "topology.debug": True}
    topology = {"topology.workers": 3, "myapp.x": "a"}
    cli = {"myapp.x": "b"}
    merged = config.merge(cluster, None, topology, {}, cli)
    assert merged["topology.workers"] == 3
    assert merged["topology.debug"] is True
    assert merged["myapp.x"] == "b"
    assert merged["topology.message.timeout.secs"] == 30
    assert set(config.defaults()) <= set(merged)
    assert cluster == {"topology.workers": 2, "topology.debug": True}  # inputs untouched


def test_merge_of_nothing_is_the_defaults() -> None:
    assert config.merge() == config.defaults() == config.merge(None)


def test_merge_validates_every_layer() -> None:
    with pytest.raises(ConfigError, match="'topology.workerz'.*did you mean 'topology.workers'"):
        config.merge({"topology.workers": 2}, {"topology.workerz": 2})
    with pytest.raises(ConfigError, match="'topology.debug' must be bool"):
        config.merge({"topology.debug": "no"})


# -- parse_overrides ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "key", "value"),
    [
        ("topology.workers=2", "topology.workers", 2),
        (" topology.workers = 3 ", "topology.workers", 3),
        ("topology.stats.sample.rate=0.5", "topology.stats.sample.rate", 0.5),
        ("topology.stats.sample.rate=1", "topology.stats.sample.rate", 1),
        ("topology.debug=true", "topology.debug", True),
        ("topology.debug=false", "topology.debug", False),
        ("topology.max.spout.pending=null", "topology.max.spout.pending", None),
        ("topology.tick.tuple.freq.secs=0.5", "topology.tick.tuple.freq.secs", 0.5),
        ("topology.name=wc", "topology.name", "wc"),
        ("topology.name=2024", "topology.name", "2024"),  # a name, even if it looks like an int
        ("storm.local.dir=/tmp/storm state", "storm.local.dir", "/tmp/storm state"),
        ("myapp.x=hello", "myapp.x", "hello"),
        ("myapp.n=7", "myapp.n", 7),
        ("myapp.list=[1, two]", "myapp.list", [1, "two"]),
        ("myapp.expr=a=b", "myapp.expr", "a=b"),
        ("myapp.empty=", "myapp.empty", ""),
        ("myapp.bad=[unclosed", "myapp.bad", "[unclosed"),
    ],
)
def test_parse_overrides(item: str, key: str, value: Any) -> None:
    parsed = config.parse_overrides([item])
    assert parsed == {key: value}
    assert type(parsed[key]) is type(value)


def test_parse_overrides_many_later_wins() -> None:
    parsed = config.parse_overrides(["topology.workers=2", "myapp.x=1", "topology.workers=4"])
    assert parsed == {"topology.workers": 4, "myapp.x": 1}


@pytest.mark.parametrize("item", ["topology.workers", "=3", " =3", ""])
def test_parse_overrides_needs_key_equals_value(item: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.parse_overrides([item])
    assert f"'{item}'" in str(info.value) and "key=value" in str(info.value)


@pytest.mark.parametrize(
    ("item", "parts"),
    [
        ("topology.wokers=2", ["-c: ", "'topology.wokers'", "did you mean 'topology.workers'"]),
        ("topology.workers=two", ["-c: ", "'topology.workers'", "must be int", "'two'"]),
        ("topology.workers=1.5", ["'topology.workers'", "must be int", "float"]),
        ("topology.workers=true", ["'topology.workers'", "must be int", "bool"]),
        ("topology.debug=1", ["'topology.debug'", "must be bool", "int"]),
        ("topology.message.timeout.secs=", ["'topology.message.timeout.secs'", "must be", "str"]),
        ("topology.message.timeout.secs=null", ["'topology.message.timeout.secs'", "NoneType"]),
    ],
)
def test_parse_overrides_rejects_bad_keys_and_values(item: str, parts: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        config.parse_overrides([item])
    message = str(info.value)
    assert all(p in message for p in parts), message
