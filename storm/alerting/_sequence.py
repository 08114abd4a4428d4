"""Sequence patterns on event time: per key, steps A -> B (-> C) within a time
bound, optionally "not followed by" a step within a time (``absent_within``).
Events wait in a buffer until the watermark passes them and are then taken in
event-time order, so events out of order within the lag match as if in order;
events behind the watermark are late (counted by the engine, never matched).
Owns only the matching; firing alerts is the engine's (_engine.py)."""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any

from ._rules import Rule

#: Open "not followed by" matches kept per key; the oldest go first past it.
MAX_AWAITING = 256


@dataclass
class Partial:
    """A match in progress: ``step`` steps done, the first at ``start``."""

    step: int
    start: float
    ids: list[str]


@dataclass
class Match:
    """A completed match: fires at event time ``ts`` with the matched events' ids."""

    key: str
    ts: float
    ids: list[str]
    detail: str


@dataclass
class SequenceKey:
    """One key's matches in progress: at most one per step reached (the one that
    started last: it has the most time left, so it completes whenever an older
    one would), plus the completed matches awaiting their absence deadline."""

    partial: dict[int, Partial] = field(default_factory=dict)
    awaiting: list[tuple[float, float, list[str]]] = field(default_factory=list)  # (deadline, done, ids)

    def empty(self) -> bool:
        return not self.partial and not self.awaiting


class SequenceMatcher:
    """Matches one sequence rule's observations for every key of a task."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        cond = rule.condition
        self.steps = len(cond.steps)
        self.within = cond.within
        self.absent_for = cond.absent_for if cond.absent is not None else None
        self.keys: dict[str, SequenceKey] = {}
        # Waiting for the watermark: (ts, event id, arrival seq, key, step indices).
        self._pending: list[tuple[float, str, int, str, list[int]]] = []
        self._deadlines: list[tuple[float, str]] = []  # (absence deadline, key)
        self._seq = 0
        self.dropped = 0

    def observe(self, key: str, ts: float, steps: list[int], event_id: str) -> None:
        self._seq += 1
        heapq.heappush(self._pending, (ts, event_id, self._seq, key, list(steps)))

    def next_due(self) -> float:
        """The event time past which there is work (an event or a deadline)."""
        a = self._pending[0][0] if self._pending else math.inf
        b = self._deadlines[0][0] if self._deadlines else math.inf
        return min(a, b)

    def advance(self, watermark: float) -> list[Match]:
        """Takes every buffered event before ``watermark`` in event-time order,
        then fires the absence deadlines the watermark passed."""
        out: list[Match] = []
        pending = self._pending
        deadlines = self._deadlines
        while True:
            ev_ts = pending[0][0] if pending else math.inf
            dl_ts = deadlines[0][0] if deadlines else math.inf
            if min(ev_ts, dl_ts) >= watermark:
                break
            if dl_ts < ev_ts:  # a deadline strictly before the next event: nothing followed
                _, key = heapq.heappop(deadlines)
                self._expire(key, dl_ts, out)
                continue
            ts, event_id, _, key, steps = heapq.heappop(pending)
            self._step(key, ts, steps, event_id, out)
        return out

    def _step(self, key: str, ts: float, steps: list[int], event_id: str, out: list[Match]) -> None:
        sk = self.keys.get(key)
        if sk is None:
            sk = self.keys[key] = SequenceKey()
        n = self.steps
        # A "not followed by" event cancels every completed match it follows in time.
        if n in steps and sk.awaiting:
            sk.awaiting = [a for a in sk.awaiting if not (a[1] <= ts <= a[0])]
        # Advance from the furthest step down, so one event moves a match one step.
        for done in sorted(sk.partial, reverse=True):
            p = sk.partial[done]
            if ts - p.start > self.within:
                del sk.partial[done]
                continue
            if done in steps:
                del sk.partial[done]
                self._reach(sk, key, Partial(done + 1, p.start, [*p.ids, event_id]), ts, out)
        if 0 in steps:
            self._reach(sk, key, Partial(1, ts, [event_id]), ts, out)
            if self.steps > 1 and math.isfinite(self.within):
                # So a match that can no longer complete is dropped, even if the
                # key sends nothing more.
                heapq.heappush(self._deadlines, (ts + self.within, key))
        if sk.empty():
            del self.keys[key]

    def _reach(self, sk: SequenceKey, key: str, p: Partial, ts: float, out: list[Match]) -> None:
        if p.step < self.steps:
            old = sk.partial.get(p.step)
            if old is None or old.start <= p.start:
                sk.partial[p.step] = p
            return
        if self.absent_for is None:
            out.append(Match(key, ts, p.ids, f"sequence of {self.steps} within {ts - p.start:.4g}s"))
            return
        deadline = ts + self.absent_for
        sk.awaiting.append((deadline, ts, p.ids))
        if len(sk.awaiting) > MAX_AWAITING:
            sk.awaiting.pop(0)
            self.dropped += 1
        heapq.heappush(self._deadlines, (deadline, key))

    def _expire(self, key: str, deadline: float, out: list[Match]) -> None:
        sk = self.keys.get(key)
        if sk is None:
            return
        for done in [d for d, p in sk.partial.items() if p.start + self.within <= deadline]:
            del sk.partial[done]
        keep: list[tuple[float, float, list[str]]] = []
        for a in sk.awaiting:
            if a[0] <= deadline:
                out.append(Match(key, a[0], a[2], f"not followed within {self.absent_for:g}s"))
            else:
                keep.append(a)
        sk.awaiting = keep
        if sk.empty():
            del self.keys[key]

    # -- checkpoints ----------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        return {
            "keys": {k: [[[p.step, p.start, p.ids] for p in sk.partial.values()],
                         [[d, t, ids] for d, t, ids in sk.awaiting]]
                     for k, sk in self.keys.items()},
            "pending": [[ts, i, s, k, st] for ts, i, s, k, st in self._pending],
            "deadlines": [[d, k] for d, k in self._deadlines],
            "seq": self._seq,
        }

    def load(self, data: dict[str, Any]) -> None:
        for k, (partials, awaiting) in (data.get("keys") or {}).items():
            sk = SequenceKey()
            for step, start, ids in partials:
                sk.partial[int(step)] = Partial(int(step), float(start), list(ids))
            sk.awaiting = [(float(d), float(t), list(ids)) for d, t, ids in awaiting]
            self.keys[k] = sk
        self._pending = [(float(ts), str(i), int(s), str(k), list(st))
                         for ts, i, s, k, st in data.get("pending") or []]
        heapq.heapify(self._pending)
        self._deadlines = [(float(d), str(k)) for d, k in data.get("deadlines") or []]
        heapq.heapify(self._deadlines)
        self._seq = int(data.get("seq", 0))

    def size(self) -> tuple[int, int]:
        """(keys, open matches + buffered events)."""
        open_ = sum(len(sk.partial) + len(sk.awaiting) for sk in self.keys.values())
        return len(self.keys), open_ + len(self._pending)
