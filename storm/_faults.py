"""Fault injection for the in-process test harness: a user's test says which
tuples a bolt loses, gets late, gets twice or fails, and on which input a bolt
crashes; the harness applies it through a task hook (`TaskHooks.admit`), so the
runtime's own delivery, anchoring, acking and timeouts do the rest.

A rule names the bolt that receives the tuple and narrows it by the tuple's
stream, its source component, a predicate on the tuple and/or the index of the
matching tuple (0 = the first tuple the rule sees), and to one task with
`task` (a task id); `times` bounds how often it
fires (default once; None: every match). Rules are tried in the order they were
added and the first that fires takes the tuple. Tuples the harness put back
(a delayed tuple, a duplicate) are never matched again.

What each kind does, as it would happen to a real worker:

- ``drop``: the tuple never reaches execute; its tree times out and the spout
  gets ``fail`` after ``topology.message.timeout.secs`` (advance the clock);
- ``delay``: the tuple is held back for ``seconds`` of the virtual clock;
- ``duplicate``: the bolt gets the tuple again, unanchored (a copy outside any
  tuple tree, so the tree completes as usual);
- ``fail``: the tuple is failed without being executed (the spout gets ``fail``);
- ``crash``: the bolt raises ``InjectedFault`` instead of executing the tuple:
  the error is recorded for the task and the tuple failed, as for any exception
  in execute (the bolt's state is untouched; a crash that loses a worker's state
  is `LocalTopology.kill_worker_when`).

For Trident, `replay_committed` and `replay_failed` replay a batch that some
state tasks already committed, or one that failed before any commit: what a
transactional or opaque state must count exactly once."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._errors import StormError
from ._runtime import TaskHooks
from ._tuple import Tuple

__all__ = ["FaultEvent", "Faults", "InjectedFault"]

KINDS = ("drop", "delay", "duplicate", "fail", "crash")


class InjectedFault(StormError):
    """The exception a ``crash`` fault records for a bolt (not raised into the test)."""


@dataclass(frozen=True)
class FaultEvent:
    """One fault applied: its kind, the bolt task that received the tuple, the
    tuple's stream, source component and values, and the virtual time."""

    kind: str
    component: str
    task: int
    stream: str
    source: str
    values: list[Any]
    at: float


@dataclass
class _Rule:
    kind: str
    bolt: str
    stream: str | None
    source: str | None
    where: Callable[[Tuple], bool] | None
    index: int | None
    times: int | None
    seconds: float = 0.0
    task: int | None = None  # a task id; -1: the bolt's last task (resolved at bind)
    seen: int = 0
    fired: int = 0

    def fires(self, component: str, task_id: int, tup: Tuple) -> bool:
        if component != self.bolt or (self.task is not None and task_id != self.task):
            return False
        if self.stream is not None and tup.stream != self.stream:
            return False
        if self.source is not None and tup.source_component != self.source:
            return False
        if self.where is not None and not self.where(tup):
            return False
        n = self.seen
        self.seen += 1
        if self.index is not None and n != self.index:
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        self.fired += 1
        return True


@dataclass(order=True)
class _Held:
    due: float
    seq: int
    task: Any = field(compare=False)
    tup: Tuple = field(compare=False)


class Faults:
    """The faults of one test run; pass it as ``faults=`` to TestTopology or
    run_topology. Every method returns the Faults, so rules chain::

        faults = Faults().crash("count", where=lambda t: t[0] == "cow").drop("split", index=2)
    """

    def __init__(self) -> None:
        self.rules: list[_Rule] = []
        #: Every fault applied, in order.
        self.events: list[FaultEvent] = []
        self._held: list[_Held] = []
        self._seq = 0
        # Tuples the harness put back, by id (kept alive so an id is not reused).
        self._exempt: dict[int, Tuple] = {}
        self._clock: Callable[[], float] | None = None
        self._owner: object | None = None

    # -- rules -------------------------------------------------------------
    def _add(self, kind: str, bolt: Any, stream: str | None, source: Any, where: Any, index: int | None,
             times: int | None, seconds: float = 0.0, task: int | None = None) -> Faults:
        name = getattr(bolt, "name", bolt)
        src = getattr(source, "name", source)
        if not isinstance(name, str):
            raise StormError(f"{kind}(): the first argument is the bolt that receives the tuple, got {bolt!r}")
        if where is not None and not callable(where):
            raise StormError(f"{kind}('{name}'): where= takes a function of the tuple, got {where!r}")
        if index is not None and (not isinstance(index, int) or index < 0):
            raise StormError(f"{kind}('{name}'): index= is the 0-based index of a matching tuple, got {index!r}")
        if times is not None and (not isinstance(times, int) or times < 1):
            raise StormError(f"{kind}('{name}'): times= must be an integer >= 1 or None (every match), got {times!r}")
        if task is not None and (not isinstance(task, int) or (task < 0 and task != -1)):
            raise StormError(f"{kind}('{name}'): task= is a task id of the bolt (or -1: its last task), got {task!r}")
        self.rules.append(_Rule(kind, name, stream, src, where, index, times, seconds, task))
        return self

    def drop(self, bolt: Any, *, stream: str | None = None, source: Any = None,
             where: Callable[[Tuple], bool] | None = None, index: int | None = None,
             times: int | None = 1, task: int | None = None) -> Faults:
        """Lose matching tuples on their way to ``bolt`` (their trees time out)."""
        return self._add("drop", bolt, stream, source, where, index, times, task=task)

    def delay(self, bolt: Any, seconds: float, *, stream: str | None = None, source: Any = None,
              where: Callable[[Tuple], bool] | None = None, index: int | None = None,
              times: int | None = 1, task: int | None = None) -> Faults:
        """Hold matching tuples back for ``seconds`` of the virtual clock
        (TestTopology.advance; run_topology advances past the last one)."""
        if not isinstance(seconds, (int, float)) or seconds < 0:
            raise StormError(f"delay('{bolt}'): seconds must be a number >= 0, got {seconds!r}")
        return self._add("delay", bolt, stream, source, where, index, times, float(seconds), task)

    def duplicate(self, bolt: Any, *, stream: str | None = None, source: Any = None,
                  where: Callable[[Tuple], bool] | None = None, index: int | None = None,
                  times: int | None = 1, task: int | None = None) -> Faults:
        """Deliver matching tuples to ``bolt`` twice (the copy is unanchored)."""
        return self._add("duplicate", bolt, stream, source, where, index, times, task=task)

    def fail(self, bolt: Any, *, stream: str | None = None, source: Any = None,
             where: Callable[[Tuple], bool] | None = None, index: int | None = None,
             times: int | None = 1, task: int | None = None) -> Faults:
        """Fail matching tuples at ``bolt`` without executing them."""
        return self._add("fail", bolt, stream, source, where, index, times, task=task)

    def crash(self, bolt: Any, *, stream: str | None = None, source: Any = None,
              where: Callable[[Tuple], bool] | None = None, index: int | None = None,
              times: int | None = 1, task: int | None = None) -> Faults:
        """Make ``bolt`` raise InjectedFault on matching tuples (recorded, tuple failed)."""
        return self._add("crash", bolt, stream, source, where, index, times, task=task)

    # -- Trident ---------------------------------------------------------------
    def replay_committed(self, bolt: Any, txid: int) -> Faults:
        """Trident: fail the commit of batch ``txid`` at the last task of the
        persisting component ``bolt`` (parallelism 2 or more), so its other tasks
        have committed it when the coordinator replays it: their states then see
        a committed txid again, which a transactional or opaque state must not
        count twice."""
        return self.fail(bolt, stream="commit", where=lambda t: t.values[0] == txid, task=-1)

    def replay_failed(self, bolt: Any, txid: int) -> Faults:
        """Trident: fail batch ``txid`` at component ``bolt`` before any task
        commits it (its batch-done signal fails), so the coordinator replays it
        and every later batch in flight."""
        return self.fail(bolt, where=lambda t: t.stream in ("coord", "batch") and t.values[0] == txid)

    # -- what the harness calls --------------------------------------------
    def bind(self, owner: object, clock: Callable[[], float], bolts: dict[str, list[int]]) -> None:
        """Attach to one harness run; every rule must name one of its bolts
        (``bolts``: name -> task ids)."""
        if self._owner is not None and self._owner is not owner:
            raise StormError("this Faults is already used by another TestTopology; make one per run")
        unknown = sorted({r.bolt for r in self.rules} - set(bolts))
        if unknown:
            raise StormError(f"faults name {', '.join(repr(u) for u in unknown)}, which is not a bolt of "
                             f"this topology; its bolts are: {', '.join(sorted(bolts)) or 'none'}")
        for r in self.rules:
            tasks = bolts[r.bolt]
            if r.task == -1:
                if r.stream == "commit" and len(tasks) < 2:
                    raise StormError(f"replay_committed('{r.bolt}'): the component has one task, so no other "
                                     "task has committed the batch when it is replayed; give it par=2 or more")
                r.task = tasks[-1]
            elif r.task is not None and r.task not in tasks:
                raise StormError(f"{r.kind}('{r.bolt}'): task {r.task} is not one of its tasks {tasks}")
        self._owner = owner
        self._clock = clock

    def hook(self) -> TaskHooks:
        return _FaultHook(self)

    @property
    def held(self) -> int:
        """Tuples held back by ``delay`` and not released yet."""
        return len(self._held)

    def next_due(self) -> float:
        return self._held[0].due if self._held else float("inf")

    def last_due(self) -> float:
        return max((h.due for h in self._held), default=float("-inf"))

    def release(self, now: float) -> int:
        """Put every held tuple due by ``now`` back in its task's inbox."""
        n = 0
        while self._held and self._held[0].due <= now:
            h = heapq.heappop(self._held)
            self._exempt[id(h.tup)] = h.tup
            h.task.inbox.append(h.tup)
            n += 1
        return n

    def admit(self, task: Any, tup: Tuple) -> bool:
        if self._exempt.pop(id(tup), None) is not None:
            return True
        for rule in self.rules:
            if rule.fires(task.component, task.task_id, tup):
                return self._apply(rule, task, tup)
        return True

    def _apply(self, rule: _Rule, task: Any, tup: Tuple) -> bool:
        now = self._clock() if self._clock is not None else 0.0
        self.events.append(FaultEvent(rule.kind, task.component, task.task_id, tup.stream,
                                      tup.source_component, list(tup.values), now))
        kind = rule.kind
        if kind == "duplicate":
            copy = Tuple(list(tup.values), tup.meta, tup.source_task, None)
            self._exempt[id(copy)] = copy
            task.inbox.append(copy)
            return True
        if kind == "delay":
            self._seq += 1
            heapq.heappush(self._held, _Held(now + rule.seconds, self._seq, task, tup))
        elif kind == "fail":
            task.collector.fail(tup)
        elif kind == "crash":
            task.record_error(InjectedFault(
                f"injected crash of bolt '{task.component}' on {list(tup.values)!r:.200}"), "execute")
            task.collector.fail(tup)
        return False


class _FaultHook(TaskHooks):
    def __init__(self, faults: Faults) -> None:
        self.faults = faults

    def admit(self, task: Any, tup: Any) -> bool:
        return self.faults.admit(task, tup)
