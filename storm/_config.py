"""Configuration: the defaults in conf/defaults.yaml, validation of keys and
value types, and `-c key=value` parsing. Owns no runtime state."""

from __future__ import annotations

import difflib
import importlib.resources
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from ._errors import ConfigError

# Keys under these prefixes belong to us and must be known; any other key is a
# user's own setting and passes through untouched (as in Apache Storm).
RESERVED_PREFIXES = ("topology.", "storm.", "nimbus.", "supervisor.", "worker.")

# Types of keys whose default is null (the others take the type of their default).
_NULLABLE_TYPES: dict[str, tuple[type, ...]] = {
    "topology.tick.tuple.freq.secs": (int, float),
    "topology.acker.executors": (int,),
    "topology.max.spout.pending": (int,),
    "topology.name": (str,),
    "storm.local.dir": (str,),
    "storm.local.hostname": (str,),
    "storm.log.dir": (str,),
    "storm.cluster.state.sqlite": (str,),
    "topology.trident.meta.path": (str,),
    "topology.trident.meta.backend": (str,),
    "storm.prometheus.port": (int,),
    "topology.bolts.window.length.count": (int,),
    "topology.bolts.window.length.duration.ms": (int, float),
    "topology.bolts.sliding.interval.count": (int,),
    "topology.bolts.sliding.interval.duration.ms": (int, float),
    "topology.bolts.tuple.timestamp.field.name": (str,),
    "topology.bolts.late.tuple.stream": (str,),
    "topology.state.dir": (str,),
    "topology.state.redis.url": (str,),
    "topology.state.checkpoint.timeout.secs": (int, float),
}

# Keys that take one of a fixed set of values.
_CHOICES: dict[str, tuple[str, ...]] = {
    "topology.state.provider": ("sqlite", "redis"),
}

# Numeric keys that must be > 0: a zero or negative timeout fails every tree at
# once, a negative max.spout.pending stalls every spout without a word.
_POSITIVE: frozenset[str] = frozenset({
    "topology.message.timeout.secs",
    "topology.max.spout.pending",
    "topology.tick.tuple.freq.secs",
})

_defaults_cache: dict[str, Any] | None = None


def _read_defaults_text() -> str:
    try:
        return (importlib.resources.files("storm.conf") / "defaults.yaml").read_text()
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        # Running from a source tree without installing: conf/ sits beside storm/.
        return (Path(__file__).resolve().parent.parent / "conf" / "defaults.yaml").read_text()


def defaults() -> dict[str, Any]:
    """A fresh copy of every default key and value."""
    global _defaults_cache
    if _defaults_cache is None:
        loaded = yaml.safe_load(_read_defaults_text())
        if not isinstance(loaded, dict):
            raise ConfigError("conf/defaults.yaml is not a mapping of key: value")
        _defaults_cache = loaded
    return dict(_defaults_cache)


def _expected_types(key: str, default: Any) -> tuple[type, ...]:
    if key in _NULLABLE_TYPES:
        return _NULLABLE_TYPES[key]
    if isinstance(default, bool):
        return (bool,)
    if isinstance(default, float):
        return (int, float)
    if isinstance(default, int):
        return (int,)
    if isinstance(default, str):
        return (str,)
    if isinstance(default, list):
        return (list,)
    if isinstance(default, dict):
        return (dict,)
    return (object,)


def validate(conf: Mapping[str, Any], where: str = "config") -> None:
    """Raise ConfigError for an unknown reserved key, a value of the wrong type, or a
    value outside the key's allowed ones (_POSITIVE, _CHOICES)."""
    known = defaults()
    for key, value in conf.items():
        if not isinstance(key, str):
            raise ConfigError(f"{where}: config keys must be strings, got {key!r}")
        if key not in known:
            if key.startswith(RESERVED_PREFIXES):
                close = difflib.get_close_matches(key, list(known), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else "; see conf/defaults.yaml for every key"
                raise ConfigError(f"{where}: unknown config key '{key}'{hint}")
            continue
        if value is None and key in _NULLABLE_TYPES:
            continue
        types = _expected_types(key, known[key])
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok:
            names = " or ".join(t.__name__ for t in types)
            raise ConfigError(
                f"{where}: config key '{key}' must be {names}, got {type(value).__name__} {value!r}"
            )
        if key in _POSITIVE and not value > 0:
            raise ConfigError(f"{where}: config key '{key}' must be > 0, got {value!r}")
        choices = _CHOICES.get(key)
        if choices is not None and value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            raise ConfigError(f"{where}: config key '{key}' must be one of {allowed}, got {value!r}")


def merge(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults overridden by each layer in turn; every layer is validated."""
    out = defaults()
    for layer in layers:
        if layer:
            validate(layer)
            out.update(layer)
    return out


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Parse `key=value` strings (values as YAML scalars: 2, 1.5, true, text)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"bad -c option '{item}': write it as key=value, e.g. -c topology.workers=2")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if _NULLABLE_TYPES.get(key) == (str,) and value is not None and not isinstance(value, str):
            value = raw.strip()  # -c topology.name=2024 is the name "2024", not an int
        out[key] = value
    validate(out, where="-c")
    return out
