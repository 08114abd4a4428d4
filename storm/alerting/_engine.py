"""Evaluating alert rules on event time: per rule and key the panes of its
window (partial aggregates in one flat array, _panes.py), evaluated once the watermark passes a
window end at which the verdict can change (a pane entering or leaving), absence
checked at every slide, sequence patterns matched in event-time order
(_sequence.py), and the fire / resolve state machine with dedup and cooldown.
Pure Python, no runtime: the bolts in _bolts.py feed it, and the unit tests
drive it with scripted events."""

from __future__ import annotations

import heapq
import math
import sys
from array import array
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Final, TypedDict

from ._panes import (
    NAN,
    NEW_KEY,
    ONE_VALUE,
    STRIDE,
    TAIL,
    H,
    Pane,
    Store,
    flat_aggregate,
    flat_moments,
    flat_quantile,
    pack_bins,
    pane_length,
    pane_of_store,
    store_add,
    store_bytes,
    store_of_pane,
)
from ._rules import OPS, Rule, RuleSet
from ._sequence import SequenceMatcher

FIRING: Final = "firing"
RESOLVED: Final = "resolved"


@dataclass(frozen=True)
class Alert:
    """A change of an alert: ``state`` is "firing" or "resolved"; ``ts`` is the
    event time (end of the window) at which it changed; ``id`` names the firing
    (rule, key, fire time), so a resolve carries the id of the alert it ends and
    a replayed alert can be recognised downstream. A sequence rule's alert fires
    once per match (no resolve) and lists the matched events' ids in ``events``."""

    id: str
    rule: str
    key: str
    state: str
    ts: float
    value: float | None
    severity: str
    message: str
    events: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["events"] = list(self.events)
        return d


class StateSize(TypedDict):
    """How much alert state a task holds (for stats): (rule, key) pairs, panes,
    open sequence matches and buffered events, and approximate bytes."""

    keys: int
    panes: int
    matches: int
    bytes: int


def aggregate(kind: str, values: list[float]) -> float | None:
    """count/sum/avg/min/max/pNN of values, exactly; None when undefined (no
    values). Quantiles are nearest rank."""
    from ._panes import nearest_rank, quantile_of

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
    q = quantile_of(kind)
    if q is not None:
        ordered = sorted(values)
        return float(ordered[nearest_rank(len(ordered), q)])
    raise ValueError(f"unknown aggregate {kind!r}")


def same_definition(a: Rule, b: Rule) -> bool:
    """Whether two rules keep the same state: filter, key and condition equal."""
    return a.filter == b.filter and a.key == b.key and a.condition == b.condition


class _AbsenceKey:
    """An absence rule's key: whether it fires, since when, and the newest event
    times (absence keeps no panes; window rules keep a flat array, _panes.py)."""

    __slots__ = ("firing", "fired_at", "before", "pending")

    def __init__(self) -> None:
        self.firing = False
        self.fired_at: float | None = None
        # The newest event time per pane not evaluated yet (events may come out
        # of order); ``before``: the newest before the last end evaluated.
        self.before: float | None = None
        self.pending: dict[int, float] = {}


KeyState = Any  # array('d') for window rules (see _panes.H), _AbsenceKey for absence


def _is_firing(st: KeyState) -> bool:
    return bool(st.firing) if type(st) is _AbsenceKey else st[0] == 1.0


def _fired_at(st: KeyState) -> float | None:
    if type(st) is _AbsenceKey:
        return st.fired_at
    t = st[1]
    return None if t != t else t


def _panes_of(rs: Any, st: Any) -> list[Pane]:
    """A key's array as Pane objects (the checkpoint form)."""
    out = []
    K, mode = rs.K, rs.mode
    for p in range(H, len(st), K):
        pn = Pane(int(st[p]))
        pn.n = int(st[p + 1])
        if mode == 1 or mode == 5:
            pn.s, pn.c = st[p + 2], st[p + 3]
            if mode == 5:
                pn.ss = st[p + 4]
        elif mode == 2:
            pn.mn = st[p + 2]
        elif mode == 3:
            pn.mx = st[p + 2]
        elif mode == 4:
            pane_of_store(pn, rs.stores[int(st[p + 2])])
        out.append(pn)
    return out


def _insert_pane(st: Any, K: int, idx: int, tail: tuple[float, ...]) -> tuple[int, bool]:
    """The offset of pane ``idx`` in a key's array (an event out of order), made
    if missing; True if it was made."""
    p = len(st) - K
    while p > H and st[p - K] >= idx:
        p -= K
    if p >= H and st[p] == idx:
        return p, False
    if p < H or st[p] < idx:
        p += K
    st[p:p] = array("d", (float(idx), *tail))
    return p, True


class _RuleState:
    """One rule's keys and schedule. Times in panes: pane i is [i·L, (i+1)·L)
    seconds, L = gcd(window, slide); a window ending at pane e covers [e - W, e)."""

    __slots__ = ("rule", "kind", "keys", "L", "W", "S", "span", "agg", "q", "exact", "field",
                 "due", "heap", "next_e", "next_end", "matcher", "mode", "empty_holds", "detail",
                 "K", "tail", "blank", "stores", "nsid")

    def __init__(self, rule: Rule) -> None:
        cond = rule.condition
        self.rule = rule
        self.kind = cond.kind
        self.keys: dict[str, KeyState] = {}
        self.matcher = SequenceMatcher(rule) if cond.kind == "sequence" else None
        self.L = pane_length(cond.window, cond.slide) if self.matcher is None else 1.0
        self.W = max(1, round(cond.window / self.L)) if self.matcher is None else 1
        self.S = max(1, round(cond.slide / self.L)) if self.matcher is None else 1
        self.span = 2 * self.W if cond.kind == "rate_of_change" else self.W
        self.agg = cond.aggregate
        self.q = cond.quantile
        self.exact = cond.exact
        self.field = cond.field
        # What observe does with a value: 0 count, 1 sum/avg, 2 min, 3 max, 4 quantile, 5 anomaly.
        if cond.kind == "anomaly":
            self.mode = 5
        elif self.q is not None:
            self.mode = 4
        else:
            self.mode = {"count": 0, "sum": 1, "avg": 1, "min": 2, "max": 3}.get(self.agg, 0)
        self.K = STRIDE[self.mode]  # floats per pane in a key's array
        self.tail = TAIL[self.mode]
        self.blank = array("d", (0.0, *self.tail))
        # Quantile rules: each pane's values (raw, bins, packed bins) by store id.
        self.stores: dict[int, Store] = {}
        self.nsid = 0
        label = f"{cond.aggregate}({cond.field})" if cond.field else cond.aggregate
        self.detail = f"{label} over {cond.window:g}s"  # a threshold alert's message
        # Whether an empty window holds (count < 3 does): else an empty key needs no check.
        self.empty_holds = (cond.kind == "threshold" and self.agg == "count" and cond.compare(0.0))
        # Window ends (in panes) at which some keys must be evaluated (a key may
        # be listed twice; evaluation takes each once).
        self.due: dict[int, list[str]] = {}
        self.heap: list[int] = []
        self.next_e: int | None = None  # absence: the next window end (every slide)
        self.next_end: float | None = None  # the next end in seconds (for next_due)

    def schedule(self, key: str, e: int) -> None:
        keys = self.due.get(e)
        if keys is None:
            self.due[e] = [key]
            heapq.heappush(self.heap, e)
        else:
            keys.append(key)

    def ends_of(self, idx: int) -> tuple[int, ...]:
        """The window ends at which a new pane ``idx`` can change a verdict: it
        enters; for anomaly it moves from the current slide into the baseline;
        for rate of change from the current window to the previous; it leaves."""
        S = self.S
        first = (idx // S + 1) * S
        leave = (idx + self.span) // S * S + S
        if self.kind == "threshold":
            return (first, leave)
        return (first, first + S, leave)

    def refresh_next(self) -> None:
        if self.matcher is not None:
            due = self.matcher.next_due()
            self.next_end = due if math.isfinite(due) else None
        elif self.kind == "absence":
            self.next_end = None if self.next_e is None else self.next_e * self.L
        else:
            self.next_end = self.heap[0] * self.L if self.heap else None


class RuleEngine:
    """Every rule's state for the keys this task owns.

    ``observe(rule, key, ts, value)`` records an event (``value`` may be None for
    count and absence rules; a sequence rule's is ``[step indices, event id]``);
    ``advance(watermark)`` evaluates each rule at the window ends ``<= watermark``
    and returns the alerts that fired or resolved. Events older than the last
    watermark are late: ``observe`` returns False and counts them in ``late``.
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

    def observe(self, rule: str, key: str, ts: float, value: Any) -> bool:
        if ts < self.watermark:
            self.late += 1
            return False
        rs = self._states[rule]
        kind = rs.kind
        if rs.matcher is not None:
            steps, event_id = (value[0], value[1]) if isinstance(value, (list, tuple)) else ([0], None)
            rs.matcher.observe(key, ts, steps, str(event_id) if event_id is not None else repr(ts))
            if ts < self._due:
                self._due = ts
            rs.refresh_next()
            return True
        idx = math.floor(ts / rs.L)
        st = rs.keys.get(key)
        if kind == "absence":
            if st is None:
                st = rs.keys[key] = _AbsenceKey()
            seen = st.pending.get(idx)
            if seen is None or ts > seen:
                st.pending[idx] = ts
            e = (idx // rs.S + 1) * rs.S
            if rs.next_e is None or e < rs.next_e:
                rs.next_e = e
                end = e * rs.L
                rs.next_end = end
                if end < self._due:
                    self._due = end
            return True
        mode = rs.mode
        if value is None and mode:
            return True  # nothing to aggregate (the match bolt skips such events)
        if st is None:
            st = rs.keys[key] = NEW_KEY[:]
        K = rs.K
        n = len(st)
        if n == H or st[n - K] < idx:
            p = n
            st.extend(rs.blank)  # one copy of a blank pane, then its index
            st[p] = idx
            new = True
        elif st[n - K] == idx:
            p = n - K
            new = False
        else:
            p, new = _insert_pane(st, K, idx, rs.tail)
        st[p + 1] += 1.0
        if mode:
            v = float(value)
            if mode == 1:
                s = st[p + 2]
                t = s + v
                if abs(s) >= abs(v):
                    st[p + 3] += (s - t) + v
                else:
                    st[p + 3] += (v - t) + s
                st[p + 2] = t
            elif mode == 3:
                if v > st[p + 2]:
                    st[p + 2] = v
            elif mode == 2:
                if v < st[p + 2]:
                    st[p + 2] = v
            elif mode == 4:
                self._add_quantile(rs, st, p, new, v)
            else:
                ref = st[2]
                if ref != ref:  # NaN: the key's first value
                    ref = st[2] = v
                d = v - ref
                s = st[p + 2]
                t = s + d
                if abs(s) >= abs(d):
                    st[p + 3] += (s - t) + d
                else:
                    st[p + 3] += (d - t) + s
                st[p + 2] = t
                st[p + 4] += d * d
        if new:
            # The ends at which this pane can change the verdict (see ends_of).
            S = rs.S
            first = (idx // S + 1) * S
            due = rs.due
            for e in ((first, (idx + rs.span) // S * S + S) if kind == "threshold" else rs.ends_of(idx)):
                keys = due.get(e)
                if keys is None:
                    due[e] = [key]
                    heapq.heappush(rs.heap, e)
                else:
                    keys.append(key)
            end = first * rs.L
            if rs.next_end is None or end < rs.next_end:
                rs.next_end = end
                if end < self._due:
                    self._due = end
        return True

    @staticmethod
    def _add_quantile(rs: _RuleState, st: Any, p: int, new: bool, v: float) -> None:
        stores = rs.stores
        if new:
            sid = rs.nsid
            rs.nsid = sid + 1
            st[p + 2] = sid
            raw = stores[sid] = ONE_VALUE[:]
            raw[0] = v
            if p + 3 == len(st) and p > H:
                # The key moved on to a new pane: the one before is closed (an
                # event out of order may still reopen it), its bins are packed.
                prev = int(st[p - 1])
                store = stores[prev]
                if type(store) is dict:
                    stores[prev] = pack_bins(store)
            return
        sid = int(st[p + 2])
        store = stores[sid]
        kept = store_add(store, v, rs.exact)
        if kept is not store:
            stores[sid] = kept

    def next_due(self) -> float:
        """The earliest event time any rule waits for (inf: none)."""
        return self._due

    def advance(self, watermark: float) -> list[Alert]:
        if watermark <= self.watermark:
            return []
        self.watermark = watermark
        alerts: list[Alert] = []
        for rs in self._states.values():
            if rs.matcher is not None:
                self._sequence(rs, watermark, alerts)
            elif rs.kind == "absence":
                while rs.next_e is not None and rs.next_e * rs.L <= watermark:
                    self._absence(rs, rs.next_e, alerts)
                    rs.next_e = rs.next_e + rs.S if rs.keys else None
            else:
                heap = rs.heap
                while heap and heap[0] * rs.L <= watermark:
                    e = heapq.heappop(heap)
                    self._evaluate(rs, e, dict.fromkeys(rs.due.pop(e)), alerts)
            rs.refresh_next()
        self._due = min((rs.next_end for rs in self._states.values() if rs.next_end is not None),
                        default=math.inf)
        return alerts

    # -- evaluation ----------------------------------------------------------------
    def _evaluate(self, rs: _RuleState, e: int, keys: Iterable[str], out: list[Alert]) -> None:
        rule = rs.rule
        cooldown = rule.cooldown
        end = e * rs.L
        lo = e - rs.span
        states = rs.keys
        get = states.get
        # A threshold's check inlined (most evaluations): the aggregate of [e - W, e).
        threshold = rs.kind == "threshold"
        mode, agg, K, q = rs.mode, rs.agg, rs.K, rs.q
        first = e - rs.W
        cmp, limit = OPS[rule.condition.op], rule.condition.value
        empty = 0.0 if mode == 0 else None  # the aggregate of an empty window
        for key in keys:
            st = get(key)
            if st is None:
                continue
            if len(st) > H and st[H] < lo:
                if mode == 4:
                    self._evict(rs, st, lo)
                else:
                    p, n = H + K, len(st)
                    while p < n and st[p] < lo:
                        p += K
                    del st[H:p]
            firing = st[0] == 1.0
            fired_at = st[1]
            cooled = fired_at != fired_at or end - fired_at >= cooldown
            if len(st) == H:
                # Nothing in the window and nothing firing: nothing can change.
                if not firing and not rs.empty_holds and cooled:
                    del states[key]
                    continue
                if threshold:
                    value = empty
                    holds = value is not None and cmp(value, limit)
                    detail = rs.detail
                else:
                    holds, value, detail = self._check(rs, st, e)
            elif threshold:
                if mode == 4:
                    assert q is not None
                    value = flat_quantile(st, first, e, q, rs.stores)
                else:
                    value = flat_aggregate(mode, agg, st, K, first, e)
                holds = value is not None and cmp(value, limit)
                detail = rs.detail
            else:
                holds, value, detail = self._check(rs, st, e)
            if holds and not firing:
                if not cooled:
                    self.suppressed += 1
                    rs.schedule(key, e + rs.S)  # may fire once the cooldown is over
                else:
                    self._change(rs, key, st, FIRING, end, value, detail, out)
            elif not holds and firing:
                self._change(rs, key, st, RESOLVED, end, value, detail, out)
            if len(st) == H and st[0] != 1.0:
                fired_at = st[1]
                if fired_at != fired_at or end - fired_at >= cooldown:
                    del states[key]
                else:  # forget it once its cooldown is over
                    step = rs.S
                    rs.schedule(key, max(e + step, math.ceil((fired_at + cooldown) / rs.L / step) * step))

    @staticmethod
    def _evict(rs: _RuleState, st: Any, lo: int) -> None:
        """Drops the panes before ``lo`` (and their stores)."""
        K = rs.K
        p = H
        n = len(st)
        while p < n and st[p] < lo:
            if rs.mode == 4:
                del rs.stores[int(st[p + 2])]
            p += K
        del st[H:p]

    def _change(self, rs: _RuleState, key: str, st: KeyState, state: str, end: float,
                value: float | None, detail: str, out: list[Alert]) -> None:
        absence = type(st) is _AbsenceKey
        if state == FIRING:
            if absence:
                st.firing = True
                st.fired_at = end
            else:
                st[0] = 1.0
                st[1] = end
            self.fired += 1
        else:
            if absence:
                st.firing = False
            else:
                st[0] = 0.0
            self.resolved += 1
        out.append(self._alert(rs.rule, key, state, end, value, detail, _fired_at(st)))

    def _window(self, rs: _RuleState, st: Any, lo: int, hi: int) -> float | None:
        if rs.mode == 4:
            assert rs.q is not None
            return flat_quantile(st, lo, hi, rs.q, rs.stores)
        return flat_aggregate(rs.mode, rs.agg, st, rs.K, lo, hi)

    def _check(self, rs: _RuleState, st: Any, e: int) -> tuple[bool, float | None, str]:
        cond = rs.rule.condition
        kind = rs.kind
        W = rs.W
        if kind == "threshold":
            x = self._window(rs, st, e - W, e)
            return (x is not None and cond.compare(x)), x, rs.detail
        if kind == "rate_of_change":
            cur = self._window(rs, st, e - W, e)
            prev = self._window(rs, st, e - 2 * W, e - W)
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
        n, mean, var = flat_moments(st, e - W, e - rs.S)
        m, cur_mean, _ = flat_moments(st, e - rs.S, e)
        if n < cond.min_samples or not m:
            return False, None, ""
        ref = st[2]
        ref = ref if ref == ref and ref else 0.0
        std = math.sqrt(var)
        x = ref + cur_mean
        mean += ref
        return abs(x - mean) > cond.k * std, x, f"mean {x:.4g} outside {mean:.4g} ± {cond.k:g}·{std:.4g}"

    def _absence(self, rs: _RuleState, e: int, out: list[Alert]) -> None:
        rule = rs.rule
        end = e * rs.L
        for key, st in rs.keys.items():
            if st.pending:
                for idx in [i for i in st.pending if i < e]:
                    ts = st.pending.pop(idx)
                    if st.before is None or ts > st.before:
                        st.before = ts
            if st.before is None:
                continue
            silent = end - st.before
            holds = silent >= rule.condition.window
            if holds and not st.firing:
                if st.fired_at is not None and end - st.fired_at < rule.cooldown:
                    self.suppressed += 1
                else:
                    self._change(rs, key, st, FIRING, end, silent, f"no events for {silent:.1f}s", out)
            elif not holds and st.firing:
                self._change(rs, key, st, RESOLVED, end, silent, "", out)

    def _sequence(self, rs: _RuleState, watermark: float, out: list[Alert]) -> None:
        assert rs.matcher is not None
        rule = rs.rule
        for m in rs.matcher.advance(watermark):
            self.fired += 1
            first = m.ids[0] if m.ids else ""
            message = f"{rule.name} [{m.key}]: {m.detail}: {' -> '.join(m.ids)}"
            out.append(Alert(f"{rule.name}|{m.key}|{m.ts!r}|{first}", rule.name, m.key, FIRING,
                             m.ts, None, rule.severity, message, tuple(m.ids)))

    @staticmethod
    def _alert(rule: Rule, key: str, state: str, ts: float, value: float | None, detail: str,
               fired_at: float | None) -> Alert:
        cond = rule.condition
        if state == FIRING:
            if cond.kind in ("threshold", "rate_of_change"):
                shown = "-" if value is None else f"{value:.4g}"
                message = f"{rule.name} [{key}]: {detail} = {shown} {cond.op} {cond.value:g}"
            else:
                message = f"{rule.name} [{key}]: {detail}"
        else:
            message = f"{rule.name} [{key}]: resolved"
        return Alert(f"{rule.name}|{key}|{fired_at!r}", rule.name, key, state, ts, value,
                     rule.severity, message)

    # -- hot reload ------------------------------------------------------------------
    def replace_rules(self, rules: RuleSet) -> list[Alert]:
        """Run ``rules`` from now on (a rules file edited while running). A rule
        whose filter, key and condition are unchanged keeps its windows and
        firing state (severity, description and cooldown come from the new
        rule); an added rule starts empty; a changed or removed rule's state is
        dropped, and each of its firing keys resolves (returned), so no alert
        stays open for a definition that is gone."""
        old = self._states
        self._states = {}
        dropped: list[tuple[_RuleState, str]] = []
        for r in rules.rules:
            rs = old.pop(r.name, None)
            if rs is not None and same_definition(rs.rule, r):
                rs.rule = r
                self._states[r.name] = rs
                continue
            if rs is not None:
                dropped.append((rs, "changed"))
            self._states[r.name] = _RuleState(r)
        dropped.extend((rs, "removed") for rs in old.values())
        self.rules = rules
        alerts: list[Alert] = []
        for rs, why in dropped:
            for key, st in rs.keys.items():
                if _is_firing(st):
                    self.resolved += 1
                    a = self._alert(rs.rule, key, RESOLVED, self.watermark, None, "", _fired_at(st))
                    alerts.append(Alert(a.id, a.rule, a.key, a.state, a.ts, a.value, a.severity,
                                        f"{a.message} (rule {why})"))
        self._due = min((rs.next_end for rs in self._states.values() if rs.next_end is not None),
                        default=math.inf)
        return alerts

    # -- state (for checkpoints and stats) ----------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything needed to continue after a restart, msgpack-able. A key is
        ``[panes, ref, firing, fired_at, before, pending, 2]`` (2: this layout)."""
        rules: dict[str, Any] = {}
        for name, rs in self._states.items():
            data: dict[str, Any] = {
                "next_end": rs.next_end,
                "next_e": rs.next_e,
                "due": [[e, list(keys)] for e, keys in rs.due.items()],
                "keys": {k: self._key_row(rs, st) for k, st in rs.keys.items()},
            }
            if rs.matcher is not None:
                data["sequence"] = rs.matcher.dump()
            rules[name] = data
        return {"watermark": self.watermark if math.isfinite(self.watermark) else None,
                "late": self.late, "rules": rules}

    def restore(self, snap: dict[str, Any]) -> None:
        wm = snap.get("watermark")
        self.watermark = -math.inf if wm is None else float(wm)
        self.late = int(snap.get("late", 0))
        for name, data in (snap.get("rules") or {}).items():
            rs = self._states.get(name)
            if rs is None:  # the rule was removed from the file since
                continue
            if rs.matcher is not None:
                rs.matcher.load(data.get("sequence") or {})
                rs.refresh_next()
                continue
            raw_keys: list[str] = []
            for key, row in data.get("keys", {}).items():
                if len(row) == 5:
                    self._restore_raw(rs, key, row)
                    raw_keys.append(key)
                    continue
                rs.keys[key] = self._key_of_row(rs, row)
            for e, keys in data.get("due") or []:
                for key in keys:
                    rs.schedule(str(key), int(e))
            if raw_keys and rs.kind != "absence" and math.isfinite(self.watermark):
                self._reschedule_past(rs, raw_keys)
            if rs.kind == "absence":
                ne = data.get("next_e")
                if ne is None and data.get("next_end") is not None:
                    ne = round(float(data["next_end"]) / rs.L)
                rs.next_e = None if ne is None else int(ne)
            rs.refresh_next()
        self._due = min((rs.next_end for rs in self._states.values() if rs.next_end is not None),
                        default=math.inf)

    def _restore_raw(self, rs: _RuleState, key: str, row: list[Any]) -> None:
        """A key saved by the engine before panes: its raw (times, values) go
        back in as observations, so old checkpoints still restore."""
        times, values, firing, fired_at, before = row
        wm = self.watermark
        self.watermark = -math.inf
        try:
            for ts, v in zip(times, values, strict=False):
                self.observe(rs.rule.name, key, float(ts), v)
        finally:
            self.watermark = wm
        st = rs.keys.get(key)
        if rs.kind == "absence":
            if st is None:
                st = rs.keys[key] = _AbsenceKey()
            st.firing, st.fired_at = bool(firing), fired_at
            if before is not None and (st.before is None or before > st.before):
                st.before = before
            return
        if st is None:
            st = rs.keys[key] = NEW_KEY[:]
        st[0] = 1.0 if firing else 0.0
        st[1] = NAN if fired_at is None else float(fired_at)

    @staticmethod
    def _key_row(rs: _RuleState, st: KeyState) -> list[Any]:
        """A key's checkpoint form: ``[panes, ref, firing, fired_at, before,
        pending, 2]``, each pane as Pane.dump writes it."""
        if type(st) is _AbsenceKey:
            return [[], None, st.firing, st.fired_at, st.before, [[i, t] for i, t in st.pending.items()], 2]
        ref = st[2]
        if rs.mode == 4:
            panes = [p.dump() for p in _panes_of(rs, st)]
        else:  # Pane.dump's layout, written directly (a checkpoint holds every key)
            K, mode = rs.K, rs.mode
            panes = []
            for p in range(H, len(st), K):
                row: list[Any] = [int(st[p]), int(st[p + 1]), 0.0, 0.0, 0.0, None, None, None, None]
                if mode == 1 or mode == 5:
                    row[2], row[3] = st[p + 2], st[p + 3]
                    if mode == 5:
                        row[4] = st[p + 4]
                elif mode == 2 or mode == 3:
                    row[mode + 3] = st[p + 2]
                panes.append(row)
        return [panes, None if ref != ref else ref, st[0] == 1.0, _fired_at(st), None, [], 2]

    @staticmethod
    def _key_of_row(rs: _RuleState, row: list[Any]) -> KeyState:
        panes, ref, firing, fired_at, before, pending, _ = row
        if rs.kind == "absence":
            ab = _AbsenceKey()
            ab.firing, ab.fired_at, ab.before = bool(firing), fired_at, before
            ab.pending = {int(i): float(t) for i, t in pending}
            return ab
        st = array("d", (1.0 if firing else 0.0, NAN if fired_at is None else float(fired_at),
                         NAN if ref is None else float(ref)))
        mode = rs.mode
        for data in panes:
            pn = Pane.load(data)
            st.append(pn.idx)
            st.append(pn.n)
            if mode == 1:
                st.extend((pn.s, pn.c))
            elif mode == 2:
                st.append(pn.mn)
            elif mode == 3:
                st.append(pn.mx)
            elif mode == 4:
                sid = rs.nsid
                rs.nsid = sid + 1
                rs.stores[sid] = store_of_pane(pn)
                st.append(sid)
            elif mode == 5:
                st.extend((pn.s, pn.c, pn.ss))
        return st

    def panes_of(self, rule: str, key: str) -> list[Pane]:
        """The panes of one (rule, key) in their checkpoint form (for tests and tools)."""
        rs = self._states[rule]
        st = rs.keys.get(key)
        return [] if st is None or type(st) is _AbsenceKey else _panes_of(rs, st)

    def _reschedule_past(self, rs: _RuleState, keys: list[str]) -> None:
        """Window ends the old engine had evaluated already are not evaluated
        again (their alerts were out): the keys are looked at on the next end."""
        nxt = (math.floor(self.watermark / rs.L) // rs.S + 1) * rs.S
        for e in [e for e in rs.due if e < nxt]:
            del rs.due[e]
        rs.heap = [e for e in rs.heap if e >= nxt]
        heapq.heapify(rs.heap)
        for key in keys:
            rs.schedule(key, nxt)

    def state_size(self) -> StateSize:
        keys = panes = matches = size = 0
        for rs in self._states.values():
            if rs.matcher is not None:
                k, m = rs.matcher.size()
                keys += k
                matches += m
                size += 200 * k + 150 * m
                continue
            keys += len(rs.keys)
            for name, st in rs.keys.items():
                # The dict entry and the key's string, then its state.
                size += 40 + sys.getsizeof(name)
                if type(st) is _AbsenceKey:
                    size += 100 + 56 * len(st.pending)
                    continue
                panes += (len(st) - H) // rs.K
                size += sys.getsizeof(st)
            size += sum(8 + store_bytes(x) for x in rs.stores.values())
            size += sum(64 + 100 * len(k) for k in rs.due.values())
        return {"keys": keys, "panes": panes, "matches": matches, "bytes": size}

    def firing(self) -> list[tuple[str, str]]:
        """(rule, key) of every alert firing now."""
        return [(n, k) for n, rs in self._states.items() for k, st in rs.keys.items() if _is_firing(st)]

    def keys(self) -> Iterable[tuple[str, str]]:
        return [(n, k) for n, rs in self._states.items() for k in rs.keys]
