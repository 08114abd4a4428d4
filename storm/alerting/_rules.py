"""Alert rules as data: the schema of a rules file, its validation (one clear
error naming the rule and the field), and matching events against a rule's
filter. Owns no runtime state and no evaluation (see _engine.py)."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .._errors import ConfigError

KINDS = ("threshold", "rate_of_change", "absence", "anomaly")
AGGREGATES = ("count", "sum", "avg", "min", "max", "p95")
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}
_RULE_KEYS = {"name", "description", "severity", "filter", "key", "condition", "cooldown"}
_COND_KEYS: dict[str, set[str]] = {
    "threshold": {"kind", "aggregate", "field", "window", "slide", "op", "value"},
    "rate_of_change": {"kind", "aggregate", "field", "window", "op", "value", "percent"},
    "absence": {"kind", "for", "slide"},
    "anomaly": {"kind", "field", "window", "slide", "k", "min_samples"},
}


class RuleError(ConfigError):
    """A rules file is wrong; the message names the file, the rule and the field."""


@dataclass(frozen=True)
class Condition:
    """When a rule holds for one key; see conf/alerts.example.yaml for each kind."""

    kind: str
    window: float
    slide: float
    aggregate: str = "count"
    field: str | None = None
    op: str = ">"
    value: float = 0.0
    percent: bool = False
    k: float = 3.0
    min_samples: int = 10

    def compare(self, x: float) -> bool:
        return OPS[self.op](x, self.value)


@dataclass(frozen=True)
class Rule:
    """One alert rule: which events (filter), per what (key), when (condition)."""

    name: str
    condition: Condition
    filter: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    key: tuple[str, ...] = ()
    cooldown: float = 0.0
    severity: str = "warning"
    description: str = ""

    def matches(self, event: Mapping[str, Any]) -> bool:
        return all(event.get(name) in allowed for name, allowed in self.filter.items())

    def key_of(self, event: Mapping[str, Any]) -> str:
        if not self.key:
            return "*"
        return "|".join(str(event.get(k)) for k in self.key)


@dataclass(frozen=True)
class RuleSet:
    """Every rule of a rules file, plus where event time comes from."""

    rules: tuple[Rule, ...]
    time_field: str = "ts"
    lag: float = 0.0
    source: str = "<rules>"

    def by_name(self) -> dict[str, Rule]:
        return {r.name: r for r in self.rules}


def _num(where: str, value: Any, positive: bool = False, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RuleError(f"{where} must be a number, got {value!r}")
    if positive and value <= 0:
        raise RuleError(f"{where} must be > 0, got {value!r}")
    if minimum is not None and value < minimum:
        raise RuleError(f"{where} must be >= {minimum:g}, got {value!r}")
    return float(value)


def _check_keys(where: str, given: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise RuleError(f"{where} has unknown field '{unknown[0]}'; allowed: {', '.join(sorted(allowed))}")


def _condition(where: str, raw: Any) -> Condition:
    if not isinstance(raw, Mapping):
        raise RuleError(f"{where}: 'condition' must be a mapping with a 'kind', got {raw!r}")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise RuleError(f"{where}: condition field 'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    _check_keys(f"{where}: condition", raw, _COND_KEYS[kind])
    w = f"{where}: condition field"
    if kind == "absence":
        if "for" not in raw:
            raise RuleError(f"{w} 'for' is missing: seconds without events before the alert fires")
        secs = _num(f"{w} 'for'", raw["for"], positive=True)
        slide = _num(f"{w} 'slide'", raw.get("slide", min(secs, 1.0)), positive=True)
        return Condition(kind, window=secs, slide=slide)
    if "window" not in raw:
        raise RuleError(f"{w} 'window' is missing: the window length in seconds")
    window = _num(f"{w} 'window'", raw["window"], positive=True)
    if kind == "anomaly":
        slide = _num(f"{w} 'slide'", raw.get("slide", window / 10), positive=True)
        if slide >= window:
            raise RuleError(f"{w} 'slide' ({slide:g}) must be shorter than 'window' ({window:g})")
        fname = raw.get("field")
        if not isinstance(fname, str) or not fname:
            raise RuleError(f"{w} 'field' is missing: the event field whose values are checked")
        k = _num(f"{w} 'k'", raw.get("k", 3.0), positive=True)
        min_samples = raw.get("min_samples", 10)
        if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 2:
            raise RuleError(f"{w} 'min_samples' must be an integer >= 2, got {min_samples!r}")
        return Condition(kind, window, slide, "avg", fname, k=k, min_samples=min_samples)
    aggregate = raw.get("aggregate", "count")
    if aggregate not in AGGREGATES:
        raise RuleError(f"{w} 'aggregate' must be one of {', '.join(AGGREGATES)}, got {aggregate!r}")
    fname = raw.get("field")
    if aggregate != "count" and (not isinstance(fname, str) or not fname):
        raise RuleError(f"{w} 'field' is missing: aggregate '{aggregate}' needs the event field to aggregate")
    op = raw.get("op", ">")
    if op not in OPS:
        raise RuleError(f"{w} 'op' must be one of {', '.join(OPS)}, got {op!r}")
    if "value" not in raw:
        raise RuleError(f"{w} 'value' is missing: the threshold to compare with")
    value = _num(f"{w} 'value'", raw["value"])
    if kind == "threshold":
        slide = _num(f"{w} 'slide'", raw.get("slide", window), positive=True)
        if slide > window:
            raise RuleError(f"{w} 'slide' ({slide:g}) must not be longer than 'window' ({window:g})")
        return Condition(kind, window, slide, aggregate, fname, op, value)
    percent = raw.get("percent", False)
    if not isinstance(percent, bool):
        raise RuleError(f"{w} 'percent' must be true or false, got {percent!r}")
    # Rate of change compares consecutive tumbling windows.
    return Condition(kind, window, window, aggregate, fname, op, value, percent=percent)


def _rule(index: int, raw: Any, source: str) -> Rule:
    if not isinstance(raw, Mapping):
        raise RuleError(f"{source}: rule #{index + 1} must be a mapping, got {raw!r}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise RuleError(f"{source}: rule #{index + 1} field 'name' is missing or not a string")
    where = f"{source}: rule '{name}'"
    _check_keys(where, raw, _RULE_KEYS)
    if "condition" not in raw:
        raise RuleError(f"{where}: field 'condition' is missing")
    cond = _condition(where, raw["condition"])
    flt_raw = raw.get("filter") or {}
    if not isinstance(flt_raw, Mapping):
        raise RuleError(f"{where}: field 'filter' must be a mapping of event field: value(s), got {flt_raw!r}")
    flt: dict[str, tuple[Any, ...]] = {}
    for fname, allowed in flt_raw.items():
        values = allowed if isinstance(allowed, list) else [allowed]
        if not values:
            raise RuleError(f"{where}: filter field '{fname}' has an empty list of values")
        flt[str(fname)] = tuple(values)
    key_raw = raw.get("key") or []
    if isinstance(key_raw, str):
        key_raw = [key_raw]
    if not isinstance(key_raw, list) or not all(isinstance(k, str) and k for k in key_raw):
        raise RuleError(f"{where}: field 'key' must be an event field name or a list of them, got {key_raw!r}")
    cooldown = _num(f"{where}: field 'cooldown'", raw.get("cooldown", 0), minimum=0)
    severity = raw.get("severity", "warning")
    if not isinstance(severity, str):
        raise RuleError(f"{where}: field 'severity' must be a string, got {severity!r}")
    return Rule(name, cond, flt, tuple(key_raw), cooldown, severity, str(raw.get("description", "")))


def parse_rules(data: Any, source: str = "<rules>") -> RuleSet:
    """Validate a parsed rules document; RuleError names the rule and the field."""
    if not isinstance(data, Mapping) or "rules" not in data:
        raise RuleError(f"{source}: a rules file is a mapping with a 'rules:' list")
    _check_keys(source, data, {"rules", "time_field", "lag"})
    raw_rules = data["rules"]
    if not isinstance(raw_rules, Sequence) or isinstance(raw_rules, (str, bytes)) or not raw_rules:
        raise RuleError(f"{source}: 'rules' must be a non-empty list of rules")
    rules = [_rule(i, r, source) for i, r in enumerate(raw_rules)]
    seen: set[str] = set()
    for r in rules:
        if r.name in seen:
            raise RuleError(f"{source}: rule '{r.name}' is defined twice; rule names must be unique")
        seen.add(r.name)
    time_field = data.get("time_field", "ts")
    if not isinstance(time_field, str) or not time_field:
        raise RuleError(f"{source}: 'time_field' must be an event field name, got {time_field!r}")
    lag = _num(f"{source}: 'lag'", data.get("lag", 0.0), minimum=0)
    return RuleSet(tuple(rules), time_field, lag, source)


def load_rules(path: str | Path) -> RuleSet:
    """Read and validate a YAML rules file."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise RuleError(f"cannot read rules file '{p}': {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleError(f"rules file '{p}' is not valid YAML: {exc}") from None
    return parse_rules(data, str(p))
