"""Unit-testing spouts, bolts and whole topologies in one process, in milliseconds.

This module owns the test harness: it runs the real worker runtime (every task in
one `Worker`, no transport, no processes, no sockets) on fixed spout input and on
a virtual clock, and records what every component emitted, executed, acked and
failed. It must not change how the runtime behaves: it only wraps the methods the
runtime binds onto component instances and calls the executors' own entry points
(`step`, `tick`, `close`), so grouping, anchoring and acking are the real ones.
It is Apache Storm's `Testing.completeTopology` / `MockedSources` / `testTuple`
in Python form.

Example::

    >>> from storm import Bolt, Spout, Topology
    >>> from storm.testing import run_topology
    >>> class Lines(Spout):
    ...     outputs = ["line"]
    >>> class Split(Bolt):
    ...     outputs = ["word"]
    ...     def execute(self, tup):
    ...         for word in tup[0].split():
    ...             self.emit([word], anchors=[tup])
    ...         self.ack(tup)
    >>> class Words(Topology):
    ...     lines = Lines.spec()
    ...     split = Split.spec(inputs=[lines], par=2)
    >>> result = run_topology(Words, inputs={"lines": [["a b"], ["c"]]})
    >>> sorted(result.emitted("split"))
    [['a'], ['b'], ['c']]
    >>> result.acked("lines")
    [0, 1]
"""

from __future__ import annotations

import random
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ._acking import ROTATING_BUCKETS
from ._component import Bolt, ComponentSpec, Spout
from ._errors import StormError
from ._faults import FaultEvent, Faults, InjectedFault
from ._runtime import BoltExecutor, Executor, HookChain, Ids, SpoutExecutor, TaskHooks, Worker
from ._target import build_target, load_target
from ._topology import TopologySpec, build_spec
from ._tuple import DEFAULT_STREAM, TICK_META, StreamMeta, Tuple

__all__ = [
    "BoltRun",
    "Delivery",
    "Emission",
    "FaultEvent",
    "Faults",
    "HarnessError",
    "InjectedFault",
    "RecordedError",
    "RunResult",
    "TestTopology",
    "TopologyStalled",
    "TopologyTimeout",
    "make_tick_tuple",
    "make_tuple",
    "run_bolt",
    "run_topology",
]

_INF = float("inf")
# Attributes of the runtime the harness drives; checked once so that a change in
# the runtime fails here with a clear message instead of deep in a test.
_EXECUTOR_ATTRS = ("instance", "component", "task_id", "cdef", "inbox", "tick_secs", "next_tick", "tick")
_BOLT_ATTRS = ("basic", "current", "collector")
_SPOUT_ATTRS = ("timeouts", "rotate_secs", "next_rotate")
_RUN_BOLT_SOURCE = "_run_bolt_source"


class HarnessError(StormError):
    """storm.testing was used wrongly (unknown component, bad input), or the
    runtime it drives lacks something it needs."""


class TopologyTimeout(HarnessError):
    """The topology was still busy when the harness's time or step budget ran out.

    The message says what was still moving; ``result`` holds what was recorded.
    """

    def __init__(self, message: str, result: RunResult | None = None) -> None:
        super().__init__(message)
        self.result = result


class TopologyStalled(HarnessError):
    """Nothing moves, yet fed inputs were never emitted: a spout waits for tuple
    trees that nobody acks (``topology.max.spout.pending`` reached)."""

    def __init__(self, message: str, result: RunResult | None = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class Emission:
    """One emit call of a component, as the component made it.

    ``targets`` are the task ids the runtime sent the tuple to; ``msg_id`` is set
    for spout emits, ``anchors`` for bolt emits (for a BasicBolt, the input it was
    executing when it emitted without explicit anchors).
    """

    component: str
    task: int
    stream: str
    values: list[Any]
    targets: tuple[int, ...]
    msg_id: Any = None
    anchors: tuple[Tuple, ...] = ()
    direct_task: int | None = None


@dataclass(frozen=True)
class Delivery:
    """One tuple a bolt task executed (tick tuples are not recorded)."""

    component: str
    task: int
    tup: Tuple


@dataclass(frozen=True)
class RecordedError:
    """An error the runtime recorded for a task: an exception in execute,
    next_tuple, ack, cleanup, ... (``where`` says which) or a report_error call."""

    component: str
    task: int
    where: str
    error: str
    traceback: str

    def __str__(self) -> str:
        return f"component '{self.component}' task {self.task} in {self.where}: {self.error}"


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _errors_from(entries: Iterable[Mapping[str, Any]]) -> list[RecordedError]:
    return [
        RecordedError(
            component=str(e.get("component", "?")),
            task=int(e.get("task", 0)),
            where=str(e.get("where", "?")),
            error=str(e.get("error", "")),
            traceback=str(e.get("traceback", "")),
        )
        for e in entries
    ]


def _raise_first(errors: Sequence[RecordedError]) -> None:
    # What a test injected (Faults.crash) is what it asked for, not a failure.
    errors = [e for e in errors if not e.error.startswith(f"{InjectedFault.__name__}:")]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise HarnessError(f"{first}{more}\n{first.traceback}")


def _check_runtime(ex: Executor) -> None:
    names = _EXECUTOR_ATTRS + (_BOLT_ATTRS if isinstance(ex, BoltExecutor) else _SPOUT_ATTRS)
    missing = [n for n in names if not hasattr(ex, n)]
    if missing:
        raise HarnessError(
            f"storm.testing cannot drive this runtime: {type(ex).__name__} has no "
            f"{', '.join(missing)}; storm/testing.py must be updated with storm/_runtime.py"
        )


def _deliver_tick(ex: Executor, now: float, rate_secs: float | None = None) -> None:
    """Give one tick tuple to a bolt task through the runtime's own tick path,
    without moving the task's tick schedule."""
    saved_next, saved_secs = ex.next_tick, ex.tick_secs
    if rate_secs is not None:
        ex.tick_secs = rate_secs
    ex.next_tick = -_INF
    try:
        ex.tick(now)
    finally:
        ex.next_tick, ex.tick_secs = saved_next, saved_secs


def _row(component: str, index: int, row: Any, nfields: int, fields: Sequence[str]) -> list[Any]:
    if isinstance(row, (str, bytes)) or not isinstance(row, (list, tuple)):
        raise HarnessError(
            f"inputs['{component}'][{index}] is {row!r}; each input is a list of values, "
            f"e.g. inputs={{'{component}': [['first'], ['second']]}}"
        )
    if len(row) != nfields:
        raise HarnessError(
            f"inputs['{component}'][{index}] has {len(row)} values but stream "
            f"'{DEFAULT_STREAM}' of '{component}' declares {nfields} fields {list(fields)}"
        )
    return list(row)


class _Feeder(Spout):
    """Stands in for a spout named in `inputs`: emits the queued value lists in
    order, one per next_tuple call, each with its input index as msg id. With
    `replay` a failed input is emitted again (first in the queue), as a
    reliable spout does."""

    def __init__(self) -> None:
        self.queue: deque[tuple[int, list[Any]]] = deque()
        self.replay = False
        self.in_flight: dict[int, list[Any]] = {}

    def next_tuple(self) -> None:
        if self.queue:
            index, values = self.queue.popleft()
            if self.replay:
                self.in_flight[index] = values
            # Positional on purpose: whatever the emit signature's keyword names.
            self.emit(values, DEFAULT_STREAM, index)

    def ack(self, msg_id: Any) -> None:
        self.in_flight.pop(msg_id, None)

    def fail(self, msg_id: Any) -> None:
        values = self.in_flight.pop(msg_id, None)
        if self.replay and values is not None:
            self.queue.appendleft((msg_id, values))


def _build(topology: Any, config: Mapping[str, Any] | None) -> TopologySpec:
    obj = load_target(topology) if isinstance(topology, str) else topology
    return build_target(obj, dict(config) if config else None)


class TestTopology:
    """A topology running in this process under test control.

    Spouts named in ``inputs`` are replaced by feeders that emit the given value
    lists (msg id = index of the input, so acking applies); other spouts run for
    real. Nothing happens until you call ``run()``; time only passes when you call
    ``tick()``, ``advance()`` or ``expire_pending()``. Use it as a context manager
    so bolts get ``cleanup()`` and spouts ``close()``::

        >>> from storm import Bolt, Spout, Topology
        >>> class Numbers(Spout):
        ...     outputs = ["n"]
        >>> class Total(Bolt):
        ...     outputs = ["total"]
        ...     def prepare(self, conf, context):
        ...         self.total = 0
        ...     def execute(self, tup):
        ...         if tup.is_tick:
        ...             self.emit([self.total])
        ...         else:
        ...             self.total += tup[0]
        ...             self.ack(tup)
        >>> class Sum(Topology):
        ...     numbers = Numbers.spec()
        ...     total = Total.spec(inputs=[numbers], config={"topology.tick.tuple.freq.secs": 5})
        >>> with TestTopology(Sum, inputs={"numbers": [[1], [2]]}) as t:
        ...     t.run()
        ...     t.feed("numbers", [[3]])
        ...     t.run()
        ...     t.tick()
        ...     t.result.emitted("total")
        [[6]]

    ``timeout`` (wall-clock seconds) and ``max_steps`` (loop passes) bound each
    call of run/tick/advance; when exceeded, TopologyTimeout says what is still
    moving. Real spouts are called until they emit nothing for ``idle_steps``
    loop passes in a row or, with ``max_tuples``, once they emitted that many
    tuples (per component). ``seed`` makes the ack-tracking ids, and so the order
    of everything recorded, the same on every run.

    ``faults`` (a storm.testing.Faults) drops, delays, duplicates, fails or
    crashes chosen tuples at chosen bolts; with ``replay`` a fed spout emits a
    failed input again, as a reliable spout does (``result.replayed(spout)``).
    The same Faults also runs on real worker processes:
    ``LocalCluster.submit(..., faults=...)``, then ``topology.faults()`` and
    ``topology.replayed(spout)`` (see storm._faults for what differs there).
    """

    __test__ = False  # a class named Test* imported into a test module is not a test

    def __init__(
        self,
        topology: Any,
        inputs: Mapping[Any, Sequence[Sequence[Any]]] | None = None,
        *,
        config: Mapping[str, Any] | None = None,
        max_tuples: int | None = None,
        idle_steps: int = 10,
        max_steps: int | None = None,
        timeout: float = 5.0,
        seed: int = 0,
        faults: Faults | None = None,
        replay: bool = False,
    ) -> None:
        if idle_steps < 1:
            raise HarnessError(f"idle_steps must be at least 1, got {idle_steps}")
        spec = _build(topology, config)
        feeds: dict[str, Sequence[Sequence[Any]]] = {}
        for key, rows in (inputs or {}).items():
            name = key.name if isinstance(key, ComponentSpec) else key
            if not isinstance(name, str):
                raise HarnessError(f"inputs keys are spout names, got {key!r}")
            cdef = spec.components.get(name)
            if cdef is None or not cdef.is_spout or cdef.system:
                spouts = ", ".join(sorted(c.name for c in spec.spouts() if not c.system)) or "none"
                raise HarnessError(
                    f"inputs names '{name}', which is not a spout of topology '{spec.name}'; "
                    f"its spouts are: {spouts}"
                )
            if DEFAULT_STREAM not in cdef.outputs:
                raise HarnessError(
                    f"spout '{name}' declares no '{DEFAULT_STREAM}' stream, so inputs cannot feed it; "
                    "storm.testing feeders emit on the default stream"
                )
            feeds[name] = rows
        if feeds:
            components = dict(spec.components)
            for name in feeds:
                components[name] = replace(components[name], cls=_Feeder)
            spec = replace(spec, components=components)
        self.spec = spec
        self.max_tuples = max_tuples
        self.idle_steps = idle_steps
        self.max_steps = max_steps
        self.timeout = timeout
        #: Loop passes (Worker.step calls) so far.
        self.passes = 0
        self._now = 0.0  # the virtual clock, in seconds since the topology started
        self._rng = random.Random(seed)
        self._closed = False
        self._deadline = _INF  # run_topology's budget for the whole run
        self._step_limit: int | None = None
        self._emissions: list[Emission] = []
        self._deliveries: list[Delivery] = []
        self._acked: dict[str, list[Any]] = {}
        self._failed: dict[str, list[Any]] = {}
        self._spout_emits: Counter[str] = Counter()
        self._last_emit_pass: dict[str, int] = {}
        self._next_index: dict[str, int] = {}
        self._feeders: dict[str, list[_Feeder]] = {}
        self._real_spouts = [c.name for c in spec.spouts() if not c.system and c.name not in feeds]
        if faults is not None and not isinstance(faults, Faults):
            raise HarnessError(f"faults= takes a storm.testing.Faults, got {faults!r}")
        self.faults = faults
        if faults is not None:
            try:
                faults.bind(self, lambda: self._now,
                            {c.name: list(c.tasks) for c in spec.components.values()
                             if not c.is_spout and not c.system})
            except StormError as exc:
                raise HarnessError(str(exc)) from None

        # Tree ids from a seeded generator, so acker choice and ack order repeat.
        self.worker = Worker(spec, {t: 0 for t in spec.task_component}, 0, transport=None,
                             hooks=self._hooks_for, ids=Ids(self._rng))
        for ex in self.worker.executors.values():
            _check_runtime(ex)
            if isinstance(ex.instance, _Feeder):
                ex.instance.replay = replay
                self._feeders.setdefault(ex.component, []).append(ex.instance)
        self._start_clock()
        for name, rows in feeds.items():
            self.feed(name, rows)
        self.worker.setup()
        self.worker.set_active(True)

    # -- set-up ------------------------------------------------------------
    def _start_clock(self) -> None:
        """Put every task's timers on the virtual clock, which starts at 0."""
        for ex in self.worker.executors.values():
            if ex.tick_secs:
                ex.next_tick = float(ex.tick_secs)
            if isinstance(ex, SpoutExecutor):
                ex.next_rotate = float(ex.rotate_secs)

    def _hooks_for(self, task: Any) -> TaskHooks | None:
        """The hooks the harness records each user task with (see _Recorder)."""
        if task.system:
            return None
        if task.is_spout:
            self._acked.setdefault(task.component, [])
            self._failed.setdefault(task.component, [])
        recorder = _Recorder(self, task.component, task.task_id)
        if self.faults is not None and not task.is_spout:
            return HookChain([self.faults.hook(), recorder])
        return recorder

    def _capped(self, component: str) -> bool:
        return self.max_tuples is not None and self._spout_emits[component] >= self.max_tuples

    # -- driving -----------------------------------------------------------
    def feed(self, spout: str, rows: Sequence[Sequence[Any]]) -> None:
        """Queue more input for a spout named in ``inputs`` (call run() after).
        Inputs are spread round-robin over the spout's tasks; their msg ids keep
        counting from the previous inputs."""
        self._check_open()
        feeders = self._feeders.get(spout)
        if feeders is None:
            fed = ", ".join(sorted(self._feeders)) or "none"
            raise HarnessError(
                f"'{spout}' is not fed by the harness (fed spouts: {fed}); name it in inputs= "
                f"(inputs={{'{spout}': []}} to start it empty)"
            )
        fields = self.spec.components[spout].outputs[DEFAULT_STREAM].fields
        start = self._next_index.get(spout, 0)
        checked = [_row(spout, start + i, r, len(fields), fields) for i, r in enumerate(rows)]
        for i, values in enumerate(checked):
            index = start + i
            feeders[index % len(feeders)].queue.append((index, values))
        self._next_index[spout] = start + len(checked)

    def run(self) -> None:
        """Run until nothing moves: no tuple queued anywhere, feeders empty (or
        blocked by max.spout.pending) and real spouts idle or capped."""
        self._settle()

    def tick(self, component: str | None = None) -> None:
        """Deliver one tick tuple to every task of each user bolt that has a tick
        frequency (or only to those of ``component``), then run until quiet.
        The virtual clock does not move: acker and message timeouts do not fire."""
        self._check_open()
        if component is not None and self._component(component).is_spout:
            raise HarnessError(f"'{component}' is a spout; tick tuples go to bolts")
        targets = [ex for ex in self.worker.bolts if ex.tick_secs and not ex.cdef.system
                   and (component is None or ex.component == component)]
        if not targets:
            which = (f"bolt '{component}' has no tick frequency" if component
                     else f"no bolt of topology '{self.spec.name}' has a tick frequency")
            raise HarnessError(
                f"{which}, and Storm only ticks bolts that have one; set "
                "topology.tick.tuple.freq.secs in the bolt's config"
            )
        for ex in targets:
            _deliver_tick(ex, self._now)
        self._settle()

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass on the virtual clock: every timer that falls due
        fires in order (bolt tick tuples, the ackers' and spouts' message
        timeouts, tuples held back by a ``delay`` fault), with a run until
        quiet after each."""
        if seconds < 0:
            raise HarnessError(f"advance() needs seconds >= 0, got {seconds}")
        self._check_open()
        end = self._now + seconds
        deadline = time.monotonic() + self.timeout
        while True:
            due = min((self._next_timer(ex) for ex in self.worker.executors.values()), default=_INF)
            if self.faults is not None:
                due = min(due, self.faults.next_due())
            if due > end:
                break
            if time.monotonic() >= deadline:  # e.g. a timer that does not move on when it fires
                raise TopologyTimeout(self._busy(f"while advancing to {end:g} s (at {due:g} s)"), self.result)
            self._now = due
            if self.faults is not None:
                self.faults.release(due)
            self.worker.timers(due)
            self._settle()
        self._now = end

    @property
    def now(self) -> float:
        """The virtual clock: seconds since the topology started."""
        return self._now

    def expire_pending(self) -> None:
        """Let enough virtual time pass that every tuple tree pending now times out
        (the spout gets ``fail(msg_id)``), as topology.message.timeout.secs would:
        Storm fails a tree between 1x and 1.5x the timeout after its emit. The
        span is taken from the configuration, not from the runtime's timers, so
        a runtime that waits too long fails the test instead of being waited for."""
        self.advance(self.message_timeout() * ROTATING_BUCKETS / (ROTATING_BUCKETS - 1))

    def message_timeout(self) -> float:
        """The longest topology.message.timeout.secs of the spouts with timeouts on
        (the configured value, floored as the runtime floors its period), 0 if none."""
        longest = 0.0
        for cdef in self.spec.spouts():
            conf = {**self.spec.config, **cdef.config}
            if cdef.system or not conf.get("topology.enable.message.timeouts", True):
                continue
            secs = float(conf.get("topology.message.timeout.secs") or 30)
            longest = max(longest, secs, 0.05 * (ROTATING_BUCKETS - 1))
        return longest

    @staticmethod
    def _next_timer(ex: Executor) -> float:
        due = float(ex.next_tick) if ex.tick_secs else _INF
        if isinstance(ex, SpoutExecutor) and ex.timeouts:
            due = min(due, float(ex.next_rotate))
        return due

    def _quiet_passes_needed(self) -> int:
        live = any(not self._capped(name) for name in self._real_spouts)
        return self.idle_steps if live else 1

    def _check_open(self) -> None:
        if self._closed:
            raise HarnessError("this TestTopology is closed; create a new one")

    def _pending_ids(self) -> list[Any]:
        return [(name, m) for name in self._acked for m in self.result.pending(name)]

    def _settle(self) -> None:
        self._check_open()
        worker = self.worker
        inboxes = worker.inboxes.values()
        started = time.monotonic()
        deadline = min(started + self.timeout, self._deadline)
        limit = self.passes + self.max_steps if self.max_steps is not None else None
        if self._step_limit is not None:
            limit = self._step_limit if limit is None else min(limit, self._step_limit)
        quiet = 0
        while True:
            self.passes += 1
            did = worker.step(self._now)
            if did or any(inboxes):
                quiet = 0
            else:
                quiet += 1
                if quiet >= self._quiet_passes_needed():
                    return
            if limit is not None and self.passes >= limit:
                raise TopologyTimeout(self._busy(f"within {self.passes} loop passes (max_steps)"), self.result)
            if time.monotonic() >= deadline:
                spent = time.monotonic() - started
                raise TopologyTimeout(self._busy(f"within {spent:.2f} s (timeout)"), self.result)

    def _busy(self, within: str) -> str:
        lines = [f"topology '{self.spec.name}' did not go quiet {within}:"]
        queued = [f"{ex.component} task {t}: {len(ex.inbox)}"
                  for t, ex in self.worker.executors.items() if ex.inbox]
        if queued:
            lines.append("  tuples queued: " + ", ".join(queued))
        recent = self.passes - self.idle_steps
        for name in self._real_spouts:
            if not self._capped(name) and self._last_emit_pass.get(name, -1) >= recent:
                lines.append(
                    f"  spout '{name}' is still emitting ({self._spout_emits[name]} tuples so far); "
                    f"pass max_tuples=N, or replace it with inputs={{'{name}': [...]}}"
                )
        lines.extend(self._waiting())
        return "\n".join(lines)

    def _waiting(self) -> list[str]:
        lines = []
        result = self.result
        for name in self._acked:
            pending = result.pending(name)
            if pending:
                lines.append(f"  spout '{name}': {len(pending)} tuple trees pending, msg ids {_short(pending)}")
            remaining = result.remaining(name)
            if remaining:
                lines.append(f"  spout '{name}': {len(remaining)} inputs not emitted yet, indices {_short(remaining)}")
        return lines

    def check_complete(self) -> None:
        """Raise TopologyStalled if fed inputs are still waiting to be emitted
        while nothing moves (their spout is at topology.max.spout.pending)."""
        if any(self.result.remaining(name) for name in self._feeders):
            raise TopologyStalled(
                "\n".join([
                    f"topology '{self.spec.name}' stalled: nothing moves but some inputs were never emitted:",
                    *self._waiting(),
                    "  a bolt probably does not ack its input; call expire_pending() (or pass "
                    "expire_pending=True) to let the message timeout pass",
                ]),
                self.result,
            )

    # -- results and shutdown ------------------------------------------------
    @property
    def result(self) -> RunResult:
        """What has been recorded so far (a live view)."""
        return RunResult(self)

    def _component(self, name: str) -> Any:
        cdef = self.spec.components.get(name)
        if cdef is None or cdef.system:
            known = ", ".join(sorted(n for n, c in self.spec.components.items() if not c.system))
            raise HarnessError(
                f"topology '{self.spec.name}' has no component '{name}'; its components are: {known}"
            )
        return cdef

    def close(self) -> None:
        """Deactivate and close the spouts, clean up the bolts. Tuples emitted
        during cleanup are recorded but not delivered (their targets are shutting
        down too, as in a real worker)."""
        if self._closed:
            return
        self._closed = True
        self.worker.close()

    def __enter__(self) -> TestTopology:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _short(items: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(repr(x) for x in items[:limit])
    return shown + (", ..." if len(items) > limit else "")


def _anchors_tuple(anchors: Any) -> tuple[Tuple, ...]:
    if anchors is None:
        return ()
    if type(anchors) is Tuple:
        return (anchors,)
    return tuple(anchors)


class _Recorder(TaskHooks):
    """What the harness records of one task, as task hooks: every emit (with
    its targets), every tuple a bolt executes, the msg ids a spout is told are
    acked or failed; and it holds a real spout's next_tuple at max_tuples."""

    def __init__(self, topology: TestTopology | None, component: str, task_id: int,
                 emissions: list[Emission] | None = None, acked: list[Any] | None = None,
                 failed: list[Any] | None = None) -> None:
        self.t = topology
        self.component = component
        self.task_id = task_id
        self.emissions: list[Emission] = (topology._emissions if topology is not None
                                          else emissions if emissions is not None else [])
        self.deliveries: list[Delivery] | None = topology._deliveries if topology is not None else None
        self.acked_ids = topology._acked.get(component) if topology is not None else None
        self.failed_ids = topology._failed.get(component) if topology is not None else None
        self.acked_tuples = acked
        self.failed_tuples = failed

    def emitted(self, task: Any, stream: str, values: Sequence[Any], targets: Sequence[int],
                third: Any, direct_task: int | None) -> None:
        if task.is_spout:
            self.emissions.append(Emission(self.component, self.task_id, stream=stream,
                                           values=list(values), targets=tuple(targets), msg_id=third,
                                           direct_task=direct_task))
            t = self.t
            if t is not None:
                t._spout_emits[self.component] += 1
                t._last_emit_pass[self.component] = t.passes
        else:
            self.emissions.append(Emission(self.component, self.task_id, stream=stream,
                                           values=list(values), targets=tuple(targets),
                                           anchors=_anchors_tuple(third), direct_task=direct_task))

    def before_execute(self, task: Any, tup: Any) -> Any:
        if self.deliveries is not None:
            self.deliveries.append(Delivery(self.component, self.task_id, tup))
        return None

    def acked(self, task: Any, tup: Any) -> None:
        if self.acked_tuples is not None:
            self.acked_tuples.append(tup)

    def failed(self, task: Any, tup: Any) -> None:
        if self.failed_tuples is not None:
            self.failed_tuples.append(tup)

    def spout_acked(self, task: Any, msg_id: Any) -> None:
        if self.acked_ids is not None:
            self.acked_ids.append(msg_id)

    def spout_failed(self, task: Any, msg_id: Any) -> None:
        if self.failed_ids is not None:
            self.failed_ids.append(msg_id)

    def next_tuple_allowed(self, task: Any) -> bool:
        t = self.t
        if t is None or isinstance(task.instance, _Feeder):
            return True
        return not t._capped(self.component)


class RunResult:
    """What a TestTopology recorded: per component, what it emitted (value lists,
    all tasks, in emit order), what it executed, and per spout which msg ids
    were acked, failed or are still pending. Component and stream names are
    checked: a typo raises HarnessError instead of returning an empty list."""

    def __init__(self, topology: TestTopology) -> None:
        self._t = topology

    def __repr__(self) -> str:
        t = self._t
        return (f"<RunResult of '{t.spec.name}': {len(t._emissions)} emits, {len(t._deliveries)} "
                f"executed, {len(t.worker.new_errors)} errors, {t.passes} loop passes>")

    @property
    def spec(self) -> TopologySpec:
        return self._t.spec

    @property
    def errors(self) -> list[RecordedError]:
        """Errors the runtime recorded, in order (an exception in execute also
        fails the input tuple; the topology keeps running)."""
        return _errors_from(self._t.worker.new_errors)

    def raise_for_errors(self) -> None:
        """Raise HarnessError with the first recorded error's traceback, if any."""
        _raise_first(self.errors)

    def _stream(self, component: str, stream: str) -> None:
        cdef = self._t._component(component)
        if stream not in cdef.outputs:
            declared = ", ".join(sorted(s for s in cdef.outputs if not s.startswith("__"))) or "none"
            raise HarnessError(f"component '{component}' declares no stream '{stream}'; declared: {declared}")

    def _spout(self, component: str) -> None:
        if not self._t._component(component).is_spout:
            raise HarnessError(f"'{component}' is a bolt; acked/failed/pending are msg ids of a spout")

    def emissions(self, component: str | None = None, stream: str | None = None) -> list[Emission]:
        """Every emit call (of ``component``, on ``stream``) with its task, targets,
        msg id or anchors."""
        if component is not None:
            if stream is not None:
                self._stream(component, stream)
            else:
                self._t._component(component)
        return [e for e in self._t._emissions
                if (component is None or e.component == component) and (stream is None or e.stream == stream)]

    def emitted(self, component: str, stream: str = DEFAULT_STREAM) -> list[list[Any]]:
        """Value lists ``component`` emitted on ``stream``, all tasks, in order."""
        return [e.values for e in self.emissions(component, stream)]

    def emitted_by_task(self, component: str, stream: str = DEFAULT_STREAM) -> dict[int, list[list[Any]]]:
        """{task id: value lists it emitted on ``stream``}, every task of the component."""
        emissions = self.emissions(component, stream)
        out: dict[int, list[list[Any]]] = {t: [] for t in self.spec.components[component].tasks}
        for e in emissions:
            out[e.task].append(e.values)
        return out

    def deliveries(self, component: str | None = None) -> list[Delivery]:
        """Every tuple a bolt task executed (of ``component``), in order."""
        if component is not None:
            self._t._component(component)
        return [d for d in self._t._deliveries if component is None or d.component == component]

    def received(self, component: str, stream: str | None = None, source: str | None = None) -> list[list[Any]]:
        """Value lists of the tuples ``component`` executed (optionally only those
        of ``stream`` and/or from component ``source``), all tasks, in order."""
        return [list(d.tup.values) for d in self._received(component, stream, source)]

    def received_by_task(self, component: str, stream: str | None = None,
                         source: str | None = None) -> dict[int, list[list[Any]]]:
        """{task id: value lists it executed}, every task of the component."""
        self._t._component(component)
        out: dict[int, list[list[Any]]] = {t: [] for t in self.spec.components[component].tasks}
        for d in self._received(component, stream, source):
            out[d.task].append(list(d.tup.values))
        return out

    def _received(self, component: str, stream: str | None, source: str | None) -> list[Delivery]:
        if source is not None:
            self._t._component(source)
        return [d for d in self.deliveries(component)
                if (stream is None or d.tup.stream == stream)
                and (source is None or d.tup.source_component == source)]

    def acked(self, spout: str) -> list[Any]:
        """Msg ids the spout got ``ack`` for, in order (input indices for a fed spout)."""
        self._spout(spout)
        return list(self._t._acked.get(spout, []))

    def failed(self, spout: str) -> list[Any]:
        """Msg ids the spout got ``fail`` for, in order."""
        self._spout(spout)
        return list(self._t._failed.get(spout, []))

    def pending(self, spout: str) -> list[Any]:
        """Msg ids emitted by the spout whose tuple tree is neither acked nor
        failed yet (a bolt did not ack; see TestTopology.expire_pending)."""
        self._spout(spout)
        settled = Counter(self._t._acked.get(spout, []))
        settled.update(self._t._failed.get(spout, []))
        out = []
        for e in self._t._emissions:
            if e.component == spout and e.msg_id is not None:
                if settled[e.msg_id]:
                    settled[e.msg_id] -= 1
                else:
                    out.append(e.msg_id)
        return out

    def replayed(self, spout: str) -> list[Any]:
        """Msg ids the spout emitted again after their first emit (once per
        re-emit, in order): what a failure made it replay."""
        self._spout(spout)
        seen: set[Any] = set()
        out = []
        for e in self._t._emissions:
            if e.component == spout and e.msg_id is not None:
                try:
                    if e.msg_id in seen:
                        out.append(e.msg_id)
                    seen.add(e.msg_id)
                except TypeError:  # an unhashable msg id cannot be told apart
                    continue
        return out

    @property
    def faults(self) -> list[FaultEvent]:
        """Every fault the run's Faults applied, in order (empty without faults)."""
        f = self._t.faults
        return list(f.events) if f is not None else []

    def remaining(self, spout: str) -> list[int]:
        """Indices of inputs a fed spout has not emitted yet."""
        self._spout(spout)
        return sorted(i for f in self._t._feeders.get(spout, []) for i, _ in f.queue)

    def instances(self, component: str) -> list[Any]:
        """The component's instances (one per task, in task order), to inspect state."""
        cdef = self._t._component(component)
        return [self._t.worker.executors[t].instance for t in cdef.tasks]

    def metrics(self) -> dict[int, dict[str, Any]]:
        """The runtime's per-task metrics (emitted, executed, acked, failed, ...)."""
        return self._t.worker.metrics()


def run_topology(
    topology: Any,
    inputs: Mapping[Any, Sequence[Sequence[Any]]] | None = None,
    *,
    config: Mapping[str, Any] | None = None,
    ticks: int = 0,
    expire_pending: bool = False,
    max_tuples: int | None = None,
    idle_steps: int = 10,
    max_steps: int | None = None,
    timeout: float = 5.0,
    seed: int = 0,
    faults: Faults | None = None,
    replay: bool = False,
) -> RunResult:
    """Run a topology on fixed input until it is done, then close it.

    ``topology`` is a Topology subclass, a TopologyBuilder, a TopologySpec or a
    target such as ``"topologies/wordcount.py:WordCount"``; ``config`` overrides
    its configuration. ``inputs`` maps spout names to the value lists a feeder
    emits in their place (msg id = input index). After the run, ``ticks`` rounds
    of tick tuples go to the bolts that have a tick frequency (each round followed
    by a run); with ``expire_pending`` tuple trees still pending then time out.
    ``faults`` and ``replay`` are TestTopology's; tuples a ``delay`` fault holds
    back are released (the clock advanced past the last) before the ticks.

    Raises TopologyTimeout if still busy after ``timeout`` seconds or
    ``max_steps`` loop passes (in total), and TopologyStalled if fed inputs could
    not all be emitted. Example::

        >>> from storm import Bolt, Spout, Topology
        >>> class Numbers(Spout):
        ...     outputs = ["n"]
        >>> class FailOdd(Bolt):
        ...     def execute(self, tup):
        ...         (self.fail if tup[0] % 2 else self.ack)(tup)
        >>> class Odd(Topology):
        ...     numbers = Numbers.spec()
        ...     check = FailOdd.spec(inputs=[numbers])
        >>> result = run_topology(Odd, inputs={"numbers": [[n] for n in range(5)]})
        >>> result.acked("numbers"), result.failed("numbers")
        ([0, 2, 4], [1, 3])
    """
    if not isinstance(ticks, int) or ticks < 0:
        raise HarnessError(f"ticks must be an integer >= 0, got {ticks!r}")
    t = TestTopology(
        topology, inputs, config=config, max_tuples=max_tuples, idle_steps=idle_steps,
        max_steps=None, timeout=timeout, seed=seed, faults=faults, replay=replay,
    )
    t._deadline = time.monotonic() + timeout
    t._step_limit = max_steps
    try:
        t.run()
        # A released tuple may be delayed again by another rule: repeat until none is held.
        while faults is not None and faults.held:
            t.advance(max(0.0, faults.last_due() - t.now))
        for _ in range(ticks):
            t.tick()
        if expire_pending:
            # Expiring may let a blocked spout emit more, or a spout replay what
            # failed: repeat while that changes which trees are pending.
            before: list[Any] | None = None
            while (pending := t._pending_ids()) and pending != before:
                before = pending
                t.expire_pending()
        t.check_complete()
    finally:
        t.close()
    return t.result


# -- single bolts --------------------------------------------------------------
def make_tuple(
    values: Sequence[Any],
    *,
    fields: Sequence[str] | None = None,
    stream: str = DEFAULT_STREAM,
    component: str = "component",
    task: int = 1,
) -> Tuple:
    """A Tuple as a bolt would receive it (Storm's ``Testing.testTuple``).

    Fields default to ``field1``, ``field2``, ... Example::

        >>> tup = make_tuple(["the cow"], fields=["sentence"], component="sentences")
        >>> tup["sentence"], tup.source_component, tup.stream
        ('the cow', 'sentences', 'default')
    """
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise HarnessError(f"make_tuple() takes a list of values, e.g. make_tuple(['word']), got {values!r}")
    names = tuple(fields) if fields is not None else tuple(f"field{i + 1}" for i in range(len(values)))
    if len(names) != len(values):
        raise HarnessError(f"make_tuple(): {len(values)} values but {len(names)} fields {list(names)}")
    return Tuple(list(values), StreamMeta(component, stream, names, -1), task)


def make_tick_tuple(rate_secs: float = 1.0) -> Tuple:
    """A tick tuple (``tup.is_tick`` is true), for run_bolt."""
    return Tuple([rate_secs], TICK_META, 0)


@dataclass
class BoltRun:
    """What run_bolt recorded for one bolt instance."""

    instance: Any
    emissions: list[Emission] = field(default_factory=list)
    acked: list[Tuple] = field(default_factory=list)
    failed: list[Tuple] = field(default_factory=list)
    errors: list[RecordedError] = field(default_factory=list)
    inputs: list[Tuple] = field(default_factory=list)

    def emitted(self, stream: str = DEFAULT_STREAM) -> list[list[Any]]:
        """Value lists the bolt emitted on ``stream``, in order."""
        return [e.values for e in self.emissions if e.stream == stream]

    @property
    def unacked(self) -> list[Tuple]:
        """Inputs (not tick tuples) the bolt neither acked nor failed."""
        done = {id(t) for t in self.acked} | {id(t) for t in self.failed}
        return [t for t in self.inputs if not t.is_tick and id(t) not in done]

    def raise_for_errors(self) -> None:
        """Raise HarnessError with the first recorded error's traceback, if any."""
        _raise_first(self.errors)


def run_bolt(
    bolt: type[Bolt],
    tuples: Iterable[Tuple | Sequence[Any]],
    *,
    conf: Mapping[str, Any] | None = None,
    name: str | None = None,
    outputs: Sequence[Any] | None = None,
    cleanup: bool = True,
) -> BoltRun:
    """Run one bolt (one task) on the given tuples, in the real executor.

    ``tuples`` are Tuples (make_tuple, make_tick_tuple) or plain value lists;
    ``conf`` is the configuration prepare() sees (over the defaults). Emits go
    nowhere and are recorded; acks and fails are recorded (BasicBolt included).
    Emits with ``direct_task`` fail: a lone bolt has no subscribers. Example::

        >>> from storm import Bolt
        >>> class Split(Bolt):
        ...     outputs = ["word"]
        ...     def execute(self, tup):
        ...         for word in tup[0].split():
        ...             self.emit([word], anchors=[tup])
        ...         self.ack(tup)
        >>> run = run_bolt(Split, [["a b"], make_tuple(["c"])])
        >>> run.emitted(), len(run.acked), run.errors
        ([['a'], ['b'], ['c']], 2, [])
    """
    if not (isinstance(bolt, type) and issubclass(bolt, Bolt)):
        raise HarnessError(f"run_bolt() needs a Bolt subclass, got {bolt!r}")
    cname = name or bolt.__name__
    topo_conf = {"topology.acker.executors": 0}
    topo_conf.update(conf or {})
    spec = build_spec(f"run_bolt_{cname}", [
        _Feeder.spec(name=_RUN_BOLT_SOURCE, outputs=["field1"]),
        bolt.spec(name=cname, inputs=[_RUN_BOLT_SOURCE], outputs=outputs),
    ], topo_conf)
    run = BoltRun(instance=None)

    def hooks_for(task: Any) -> TaskHooks | None:
        if task.component != cname:
            return None
        return _Recorder(None, cname, task.task_id, emissions=run.emissions, acked=run.acked,
                         failed=run.failed)

    worker = Worker(spec, {t: 0 for t in spec.task_component}, 0, transport=None, hooks=hooks_for)
    ex = worker.executors[spec.components[cname].tasks[0]]
    assert isinstance(ex, BoltExecutor)
    _check_runtime(ex)
    run.instance = ex.instance
    worker.setup()
    for item in tuples:
        tup = item if isinstance(item, Tuple) else make_tuple(item)
        run.inputs.append(tup)
        if tup.is_tick:
            _deliver_tick(ex, 0.0, float(tup.values[0]) if tup.values else 1.0)
        else:
            ex.inbox.append(tup)
        while ex.inbox:
            ex.run(len(ex.inbox))
    if cleanup:
        ex.close()
    run.errors = _errors_from(worker.new_errors)
    return run
