"""Evaluating alert rules on event time: per rule and key the recent values, a
windowed aggregate (or absence, rate of change, anomaly) checked at every slide
boundary the watermark passes, and the fire / resolve state machine with dedup
and cooldown. Pure Python, no runtime: the bolts in _bolts.py feed it, and the
unit tests drive it with scripted events."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from ._rules import Condition, Rule, RuleSet

FIRING = "firing"
RESOLVED = "resolved"


@dataclass(frozen=True)
class Alert:
    """A change of an alert: ``state`` is "firing" or "resolved"; ``ts`` is the
    event time (end of the window) at which it changed; ``id`` names the firing
    (rule, key, fire time), so a resolve carries the id of the alert it ends and
    a replayed alert can be recognised downstream."""

    id: str
    rule: str
    key: str
    state: str
    ts: float
    value: float | None
    severity: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _KeyState:
    __slots__ = ("times", "values", "firing", "fired_at", "before", "dirty")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.values: list[float] = []
        self.firing = False
        self.fired_at: float | None = None
        # The newest event time evicted so far (absence needs the last event
        # before a window end even after its point is gone).
        self.before: float | None = None
        # Threshold rules: whether the window may differ from the last evaluation.
        self.dirty = True

    def add(self, ts: float, value: float) -> None:
        times = self.times
        if not times or ts >= times[-1]:
            times.append(ts)
            self.values.append(value)
        else:
            i = bisect.bisect_right(times, ts)
            times.insert(i, ts)
            self.values.insert(i, value)

    def evict(self, before: float) -> bool:
        cut = bisect.bisect_left(self.times, before)
        if cut:
            self.before = self.times[cut - 1]
            del self.times[:cut]
            del self.values[:cut]
            return True
        return False

    def between(self, start: float, end: float) -> list[float]:
        times = self.times
        return self.values[bisect.bisect_left(times, start):bisect.bisect_left(times, end)]


def aggregate(kind: str, values: list[float]) -> float | None:
    """count/sum/avg/min/max/p95 of values; None when undefined (no values)."""
    if kind == "count":
        return float(len(values))
    if not values:
        return None
    if kind == "sum":
        return float(math.fsum(values))
    if kind == "avg":
        return math.fsum(values) / len(values)
    if kind == "min":
        return float(min(values))
    if kind == "max":
        return float(max(values))
    if kind == "p95":  # nearest rank
        ordered = sorted(values)
        return float(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)])
    raise ValueError(f"unknown aggregate {kind!r}")


class _RuleState:
    __slots__ = ("rule", "keys", "next_end")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.keys: dict[str, _KeyState] = {}
        self.next_end: float | None = None


class RuleEngine:
    """Every rule's state for the keys this task owns.

    ``observe(rule, key, ts, value)`` records an event (``value`` may be None for
    count and absence rules); ``advance(watermark)`` evaluates each rule at every
    slide boundary ``<= watermark`` and returns the alerts that fired or resolved.
    Events older than the last watermark are late: ``observe`` returns False and
    counts them in ``late``.
    """

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        self._states = {r.name: _RuleState(r) for r in rules.rules}
        self.watermark = -math.inf
        self.late = 0
        self.fired = 0
        self.resolved = 0
        self.suppressed = 0
        self._due = math.inf  # min of the rules' next_end, kept current (read per tuple)

    def observe(self, rule: str, key: str, ts: float, value: float | None) -> bool:
        if ts < self.watermark:
            self.late += 1
            return False
        rs = self._states[rule]
        st = rs.keys.get(key)
        if st is None:
            st = rs.keys[key] = _KeyState()
        cond = rs.rule.condition
        if cond.kind == "absence" or value is not None or cond.aggregate == "count":
            st.add(ts, 0.0 if value is None else float(value))
            st.dirty = True
        end = (math.floor(ts / cond.slide) + 1) * cond.slide
        if rs.next_end is None or end < rs.next_end:
            rs.next_end = end
            if end < self._due:
                self._due = end
        return True

    def next_due(self) -> float:
        """The earliest window end any rule waits for (inf: none)."""
        return self._due

    def advance(self, watermark: float) -> list[Alert]:
        if watermark <= self.watermark:
            return []
        self.watermark = watermark
        alerts: list[Alert] = []
        for rs in self._states.values():
            slide = rs.rule.condition.slide
            while rs.next_end is not None and rs.next_end <= watermark:
                end = rs.next_end
                self._evaluate(rs, end, alerts)
                if rs.keys:
                    rs.next_end = end + slide
                else:
                    rs.next_end = None
        self._due = min((rs.next_end for rs in self._states.values() if rs.next_end is not None),
                        default=math.inf)
        return alerts

    # -- evaluation ----------------------------------------------------------------
    def _evaluate(self, rs: _RuleState, end: float, out: list[Alert]) -> None:
        rule = rs.rule
        cond = rule.condition
        if cond.kind == "absence":
            keep_from = end
        else:
            span = 2 * cond.window if cond.kind == "rate_of_change" else cond.window
            keep_from = end - span + cond.slide
        drop: list[str] = []
        # A threshold's verdict can only change when its window's contents did:
        # skip keys with no new and no evicted points that are not firing.
        skip_clean = cond.kind == "threshold"
        for key, st in rs.keys.items():
            if skip_clean and not st.dirty and not st.firing:
                if st.evict(keep_from):
                    st.dirty = True
                elif not st.times and (st.fired_at is None or end - st.fired_at >= rule.cooldown):
                    drop.append(key)
                continue
            st.dirty = False
            holds, value, detail = self._check(cond, st, end)
            if holds and not st.firing:
                if st.fired_at is not None and end - st.fired_at < rule.cooldown:
                    self.suppressed += 1
                    st.dirty = True  # may fire once the cooldown is over
                else:
                    st.firing = True
                    st.fired_at = end
                    self.fired += 1
                    out.append(self._alert(rule, key, FIRING, end, value, detail, st))
            elif not holds and st.firing:
                st.firing = False
                self.resolved += 1
                out.append(self._alert(rule, key, RESOLVED, end, value, detail, st))
            # What the next evaluation (at end + slide) no longer needs.
            if st.evict(keep_from) or (st.times and st.times[-1] >= end):
                st.dirty = True
            if (not st.times and not st.firing and cond.kind != "absence"
                    and (st.fired_at is None or end - st.fired_at >= rule.cooldown)):
                drop.append(key)
        for key in drop:
            del rs.keys[key]

    @staticmethod
    def _check(cond: Condition, st: _KeyState, end: float) -> tuple[bool, float | None, str]:
        kind = cond.kind
        if kind == "threshold":
            x = aggregate(cond.aggregate, st.between(end - cond.window, end))
            label = f"{cond.aggregate}({cond.field})" if cond.field else cond.aggregate
            return (x is not None and cond.compare(x)), x, f"{label} over {cond.window:g}s"
        if kind == "absence":
            i = bisect.bisect_left(st.times, end)
            seen = st.times[i - 1] if i else st.before
            if seen is None:
                return False, None, ""
            silent = end - seen
            return silent >= cond.window, silent, f"no events for {silent:.1f}s"
        if kind == "rate_of_change":
            cur = aggregate(cond.aggregate, st.between(end - cond.window, end))
            prev = aggregate(cond.aggregate, st.between(end - 2 * cond.window, end - cond.window))
            if cur is None or prev is None:
                return False, None, ""
            change = cur - prev
            if cond.percent:
                if prev == 0:
                    return False, None, ""
                change = change / abs(prev) * 100.0
            unit = "%" if cond.percent else ""
            return cond.compare(change), change, f"change of {cond.aggregate} {change:+.4g}{unit}"
        # anomaly: the last slide's mean against mean ± k·stddev of the rest of the window
        baseline = st.between(end - cond.window, end - cond.slide)
        current = st.between(end - cond.slide, end)
        if len(baseline) < cond.min_samples or not current:
            return False, None, ""
        mean = math.fsum(baseline) / len(baseline)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in baseline) / len(baseline))
        x = math.fsum(current) / len(current)
        return abs(x - mean) > cond.k * std, x, f"mean {x:.4g} outside {mean:.4g} ± {cond.k:g}·{std:.4g}"

    @staticmethod
    def _alert(rule: Rule, key: str, state: str, ts: float, value: float | None, detail: str,
               st: _KeyState) -> Alert:
        cond = rule.condition
        if state == FIRING:
            if cond.kind in ("threshold", "rate_of_change"):
                shown = "-" if value is None else f"{value:.4g}"
                message = f"{rule.name} [{key}]: {detail} = {shown} {cond.op} {cond.value:g}"
            else:
                message = f"{rule.name} [{key}]: {detail}"
        else:
            message = f"{rule.name} [{key}]: resolved"
        return Alert(f"{rule.name}|{key}|{st.fired_at!r}", rule.name, key, state, ts, value,
                     rule.severity, message)

    # -- state (for checkpoints) -----------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything needed to continue after a restart, msgpack-able."""
        return {
            "watermark": self.watermark if math.isfinite(self.watermark) else None,
            "rules": {
                name: {
                    "next_end": rs.next_end,
                    "keys": {k: [st.times, st.values, st.firing, st.fired_at, st.before]
                             for k, st in rs.keys.items()},
                }
                for name, rs in self._states.items()
            },
        }

    def restore(self, snap: dict[str, Any]) -> None:
        wm = snap.get("watermark")
        self.watermark = -math.inf if wm is None else float(wm)
        for name, data in (snap.get("rules") or {}).items():
            rs = self._states.get(name)
            if rs is None:  # the rule was removed from the file since
                continue
            rs.next_end = data.get("next_end")
            if rs.next_end is not None and rs.next_end < self._due:
                self._due = rs.next_end
            for key, (times, values, firing, fired_at, before) in data.get("keys", {}).items():
                st = _KeyState()
                st.times, st.values = list(times), list(values)
                st.firing, st.fired_at, st.before = bool(firing), fired_at, before
                rs.keys[key] = st

    def firing(self) -> list[tuple[str, str]]:
        """(rule, key) of every alert firing now."""
        return [(n, k) for n, rs in self._states.items() for k, st in rs.keys.items() if st.firing]

    def keys(self) -> Iterable[tuple[str, str]]:
        return [(n, k) for n, rs in self._states.items() for k in rs.keys]
