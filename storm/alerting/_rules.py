"""Alert rules as data: the schema of a rules file, its validation (one clear
error naming the rule and the field), and matching events against a rule's
filter. Owns no runtime state and no evaluation (see _engine.py)."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .._errors import ConfigError
from ._panes import quantile_of

KINDS = ("threshold", "rate_of_change", "absence", "anomaly", "sequence")
#: Named aggregates; any "pNN" (p50, p99.9: 0 < NN < 100) is a quantile too.
AGGREGATES = ("count", "sum", "avg", "min", "max", "p50", "p90", "p95", "p99")
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}
_RULE_KEYS = {"name", "description", "severity", "filter", "key", "condition", "cooldown"}
_COND_KEYS: dict[str, set[str]] = {
    "threshold": {"kind", "aggregate", "field", "window", "slide", "op", "value", "exact"},
    "rate_of_change": {"kind", "aggregate", "field", "window", "op", "value", "percent", "exact"},
    "absence": {"kind", "for", "slide"},
    "anomaly": {"kind", "field", "window", "slide", "k", "min_samples"},
    "sequence": {"kind", "steps", "within", "absent_within", "id_field"},
}
_STEP_KEYS = {"filter", "field", "op", "value"}


class RuleError(ConfigError):
    """A rules file is wrong; the message names the file, the rule and the field."""


@dataclass(frozen=True)
class Step:
    """One step of a sequence rule: which events it takes (``filter``, every field
    equal to one of its values) and, optionally, a threshold on a field."""

    filter: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    field: str | None = None
    op: str = ">"
    value: float = 0.0

    def matches(self, event: Mapping[str, Any]) -> bool:
        if not all(event.get(name) in allowed for name, allowed in self.filter.items()):
            return False
        if self.field is None:
            return True
        x = event.get(self.field)
        return (isinstance(x, (int, float)) and not isinstance(x, bool)
                and OPS[self.op](float(x), self.value))


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
    #: Quantile aggregates: keep every value (exact quantiles, 8 bytes a value)
    #: instead of a sketch (bounded memory, 1% relative error).
    exact: bool = False
    # Sequence rules: the steps in order, the time from the first step's event to
    # the last one's (``within``), the step that must NOT follow (``absent``) and
    # for how long after the last step (``absent_for``), the event field naming
    # an event in the alert.
    steps: tuple[Step, ...] = ()
    within: float = math.inf
    absent: Step | None = None
    absent_for: float = 0.0
    id_field: str = "id"

    def compare(self, x: float) -> bool:
        return OPS[self.op](x, self.value)

    @property
    def quantile(self) -> float | None:
        return quantile_of(self.aggregate)

    def step_matches(self, event: Mapping[str, Any]) -> list[int]:
        """Sequence rules: the indices of the steps the event matches;
        ``len(steps)`` stands for the ``absent_within`` step."""
        got = [i for i, st in enumerate(self.steps) if st.matches(event)]
        if self.absent is not None and self.absent.matches(event):
            got.append(len(self.steps))
        return got


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


def _filter(where: str, flt_raw: Any) -> dict[str, tuple[Any, ...]]:
    if not isinstance(flt_raw, Mapping):
        raise RuleError(f"{where} must be a mapping of event field: value(s), got {flt_raw!r}")
    flt: dict[str, tuple[Any, ...]] = {}
    for fname, allowed in flt_raw.items():
        values = allowed if isinstance(allowed, list) else [allowed]
        if not values:
            raise RuleError(f"{where} field '{fname}' has an empty list of values")
        flt[str(fname)] = tuple(values)
    return flt


def _step(where: str, raw: Any) -> Step:
    if not isinstance(raw, Mapping):
        raise RuleError(f"{where} must be a mapping with a 'filter', got {raw!r}")
    _check_keys(where, raw, _STEP_KEYS)
    flt = _filter(f"{where} 'filter'", raw.get("filter") or {})
    fname = raw.get("field")
    if fname is None:
        if not flt:
            raise RuleError(f"{where} needs a 'filter' (or a 'field' threshold): a step that takes every event")
        return Step(flt)
    if not isinstance(fname, str) or not fname:
        raise RuleError(f"{where} 'field' must be an event field name, got {fname!r}")
    op = raw.get("op", ">")
    if op not in OPS:
        raise RuleError(f"{where} 'op' must be one of {', '.join(OPS)}, got {op!r}")
    if "value" not in raw:
        raise RuleError(f"{where} 'value' is missing: the threshold on '{fname}'")
    return Step(flt, fname, op, _num(f"{where} 'value'", raw["value"]))


def _sequence(where: str, raw: Mapping[str, Any]) -> Condition:
    w = f"{where}: condition field"
    steps_raw = raw.get("steps")
    if not isinstance(steps_raw, list) or not steps_raw:
        raise RuleError(f"{w} 'steps' must be a non-empty list of steps (each a 'filter'), got {steps_raw!r}")
    steps = tuple(_step(f"{w} 'steps' #{i + 1}", st) for i, st in enumerate(steps_raw))
    within = math.inf
    if "within" in raw:
        within = _num(f"{w} 'within'", raw["within"], positive=True)
    elif len(steps) > 1:
        raise RuleError(f"{w} 'within' is missing: the seconds from the first step to the last")
    absent: Step | None = None
    absent_for = 0.0
    if "absent_within" in raw:
        a = raw["absent_within"]
        aw = f"{w} 'absent_within'"
        if not isinstance(a, Mapping) or "for" not in a:
            raise RuleError(f"{aw} must be a mapping with 'for' (seconds) and a 'filter', got {a!r}")
        absent_for = _num(f"{aw} 'for'", a["for"], positive=True)
        absent = _step(aw, {k: v for k, v in a.items() if k != "for"})
    id_field = raw.get("id_field", "id")
    if not isinstance(id_field, str) or not id_field:
        raise RuleError(f"{w} 'id_field' must be an event field name, got {id_field!r}")
    return Condition("sequence", window=within, slide=0.0, steps=steps, within=within,
                     absent=absent, absent_for=absent_for, id_field=id_field)


def _condition(where: str, raw: Any) -> Condition:
    if not isinstance(raw, Mapping):
        raise RuleError(f"{where}: 'condition' must be a mapping with a 'kind', got {raw!r}")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise RuleError(f"{where}: condition field 'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    _check_keys(f"{where}: condition", raw, _COND_KEYS[kind])
    w = f"{where}: condition field"
    if kind == "sequence":
        return _sequence(where, raw)
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
    if aggregate not in AGGREGATES and (not isinstance(aggregate, str) or quantile_of(aggregate) is None):
        raise RuleError(f"{w} 'aggregate' must be one of {', '.join(AGGREGATES)} or pNN "
                        f"(a percentile, 0 < NN < 100), got {aggregate!r}")
    exact = raw.get("exact", False)
    if not isinstance(exact, bool):
        raise RuleError(f"{w} 'exact' must be true or false, got {exact!r}")
    if exact and quantile_of(aggregate) is None:
        raise RuleError(f"{w} 'exact' applies to quantile aggregates (p50, p95, ...), not '{aggregate}'")
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
        return Condition(kind, window, slide, aggregate, fname, op, value, exact=exact)
    percent = raw.get("percent", False)
    if not isinstance(percent, bool):
        raise RuleError(f"{w} 'percent' must be true or false, got {percent!r}")
    # Rate of change compares consecutive tumbling windows.
    return Condition(kind, window, window, aggregate, fname, op, value, percent=percent, exact=exact)


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
    flt = _filter(f"{where}: field 'filter'", raw.get("filter") or {})
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


# -- checking a whole file: every error, with its line ---------------------------------
def _line_of(node: Any, *path: str) -> int | None:
    """The 1-based line of the mapping key ``path`` under ``node`` (a yaml
    node), as deep as the path goes; None when ``node`` is not a mapping."""
    line: int | None = None
    for name in path:
        if not isinstance(node, yaml.MappingNode):
            break
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == name:
                line = k.start_mark.line + 1
                node = v
                break
        else:
            break
    return line


def _field_line(rule_node: Any, message: str) -> int:
    """Where in a rule the error ``message`` points: the line of the field it
    names (in the rule or in its condition), else the rule's first line."""
    line = rule_node.start_mark.line + 1
    m = re.search(r"field '([^']+)'", message)
    if m is None:
        m = re.search(r"'(\w+)' (?:must|is missing|has)", message)
    if m is None:
        return line
    name = m.group(1)
    in_condition = re.search(r"(?:rule '[^']*'|rule #\d+): condition", message) is not None
    if in_condition:
        return _line_of(rule_node, "condition", name) or _line_of(rule_node, "condition") or line
    return _line_of(rule_node, name) or line


def check_rules_text(text: str, source: str) -> tuple[RuleSet | None, list[str]]:
    """Validate a rules document and report every error, not only the first:
    one line per wrong rule (``file:line: rule 'name': ...``) plus the file's
    own errors. (The rule set, []) when it is valid."""
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{source}:{mark.line + 1}" if mark is not None else source
        return None, [f"{at}: not valid YAML: {getattr(exc, 'problem', None) or exc}"]
    try:
        return parse_rules(data, source), []
    except RuleError as first:
        errors: list[str] = []
        raw_rules = data.get("rules") if isinstance(data, Mapping) else None
        nodes = []
        if isinstance(root, yaml.MappingNode):
            for k, v in root.value:
                if isinstance(k, yaml.ScalarNode) and k.value == "rules" and isinstance(v, yaml.SequenceNode):
                    nodes = v.value
        if not isinstance(raw_rules, list) or len(nodes) != len(raw_rules):
            return None, [str(first)]
        names: dict[str, int] = {}
        for i, (raw, node) in enumerate(zip(raw_rules, nodes, strict=True)):
            line = node.start_mark.line + 1
            try:
                rule = _rule(i, raw, source)
            except RuleError as exc:
                msg = str(exc)
                shown = msg[len(source) + 2:] if msg.startswith(f"{source}: ") else msg
                errors.append(f"{source}:{_field_line(node, msg)}: {shown}")
                continue
            if rule.name in names:
                errors.append(f"{source}:{line}: rule '{rule.name}' is defined twice (first at line "
                              f"{names[rule.name]}); rule names must be unique")
            names.setdefault(rule.name, line)
        # The file's own fields (time_field, lag, unknown keys), checked with one valid rule.
        if raw_rules and isinstance(data, Mapping):
            try:
                parse_rules({**data, "rules": [{"name": "_", "condition": {"kind": "absence", "for": 1}}]},
                            source)
            except RuleError as exc:
                msg = str(exc)
                m = re.match(rf"{re.escape(source)}: (?:has unknown field )?'(\w+)'", msg)
                line = _line_of(root, m.group(1)) if m else None
                errors.insert(0, msg if line is None else f"{source}:{line}:{msg[len(source) + 1:]}")
        return None, errors or [str(first)]


def check_rules_file(path: str | Path) -> tuple[RuleSet | None, list[str]]:
    """check_rules_text of a file; an unreadable file is one error."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        return None, [f"cannot read rules file '{p}': {exc.strerror or exc}"]
    return check_rules_text(text, str(p))
