"""Silences: a rule, or one key of a rule, muted until a time. They live in a
YAML file beside the rules file (``alerts.yaml`` -> ``alerts.silences.yaml``),
so the running evaluators see them the way they see rule edits (the same
watcher, at every tick) and `storm alerts silence` needs no connection to the
topology, on this machine or on a cluster whose hosts share the path. A muted
alert keeps its firing state in the engine; only its notifications (the
firing and the resolve that ends it) are held back.

The file, as `storm alerts silence` writes it::

    silences:
      - rule: cpu_high
        key: host-2          # absent: every key of the rule
        until: 1733350000.0  # wall-clock seconds (UTC epoch)
        created: 1733348200.0
        comment: maintenance
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ._rules import RuleError

__all__ = ["Silence", "SilenceError", "add_silence", "load_silences", "parse_duration", "silences_path"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


class SilenceError(RuleError):
    """A silence or a silences file is wrong; the message says which and how to fix it."""


@dataclass(frozen=True)
class Silence:
    rule: str
    key: str | None
    until: float
    created: float = 0.0
    comment: str = ""

    def mutes(self, rule: str, key: str, now: float) -> bool:
        return rule == self.rule and (self.key is None or self.key == key) and now < self.until

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"rule": self.rule}
        if self.key is not None:
            d["key"] = self.key
        d.update(until=self.until, created=self.created)
        if self.comment:
            d["comment"] = self.comment
        return d


def silences_path(rules_path: str | Path) -> Path:
    """Where the silences of a rules file live: beside it, ``<stem>.silences.yaml``."""
    p = Path(rules_path)
    return p.with_name(f"{p.stem}.silences.yaml")


def parse_duration(text: str) -> float:
    """Seconds of ``30m``, ``2h``, ``1h30m``, ``45s``, ``1d`` or a bare number of seconds."""
    raw = text.strip().lower()
    try:
        secs = float(raw)
    except ValueError:
        parts = _DURATION.findall(raw)
        if not parts or "".join(n + u for n, u in parts) != raw:
            raise SilenceError(f"bad duration '{text}': write it as 30m, 2h, 1h30m, 45s, 1d or seconds") from None
        secs = sum(float(n) * _UNITS[u] for n, u in parts)
    if not math.isfinite(secs) or secs <= 0:
        raise SilenceError(f"bad duration '{text}': it must be more than 0 seconds")
    return secs


def _entry(path: Path, i: int, raw: Any) -> Silence:
    where = f"{path}: silences[{i}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("rule"), str) or not raw["rule"]:
        raise SilenceError(f"{where} must be a mapping with 'rule' (a rule name) and 'until', got {raw!r}")
    key = raw.get("key")
    until = raw.get("until")
    if isinstance(until, bool) or not isinstance(until, (int, float)):
        raise SilenceError(f"{where} 'until' must be wall-clock seconds (a number), got {until!r}")
    created = raw.get("created", 0.0)
    return Silence(raw["rule"], None if key is None else str(key), float(until),
                   float(created) if isinstance(created, (int, float)) else 0.0, str(raw.get("comment") or ""))


def load_silences(path: str | Path) -> list[Silence]:
    """The silences in ``path`` (a missing file holds none)."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise SilenceError(f"cannot read silences file '{p}': {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SilenceError(f"silences file '{p}' is not valid YAML: {exc}") from None
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("silences", []), list):
        raise SilenceError(f"silences file '{p}' must be a mapping with a 'silences:' list")
    return [_entry(p, i, raw) for i, raw in enumerate(data.get("silences") or [])]


def write_silences(path: str | Path, silences: Iterable[Silence]) -> None:
    """Replace the file at once (readers see the old or the new file, never half)."""
    p = Path(path)
    doc = {"silences": [s.to_dict() for s in silences]}
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_text("# Written by `storm alerts silence`; read by the running evaluators.\n"
                   + yaml.safe_dump(doc, sort_keys=False))
    os.replace(tmp, p)


def add_silence(rules_path: str | Path, rule_names: Iterable[str], rule: str, key: str | None,
                seconds: float, comment: str = "", now: float | None = None) -> Silence:
    """Add a silence of ``rule`` (one ``key`` of it, or all) for ``seconds`` to the
    silences file of ``rules_path``; expired silences are dropped on the way."""
    names = sorted(rule_names)
    if rule not in names:
        raise SilenceError(f"no rule '{rule}' in {rules_path}; its rules: {', '.join(names)}")
    now = time.time() if now is None else now
    path = silences_path(rules_path)
    kept = [s for s in load_silences(path) if s.until > now]
    new = Silence(rule, key, now + seconds, now, comment)
    write_silences(path, [*kept, new])
    return new


class SilenceSet:
    """The silences an evaluator applies, re-read when the file changes."""

    def __init__(self, silences: Iterable[Silence] = ()) -> None:
        self.items = list(silences)

    def mutes(self, rule: str, key: str, now: float | None = None) -> bool:
        if not self.items:
            return False
        t = time.time() if now is None else now
        return any(s.mutes(rule, key, t) for s in self.items)

    def active(self, now: float | None = None) -> list[Silence]:
        t = time.time() if now is None else now
        return [s for s in self.items if s.until > t]
