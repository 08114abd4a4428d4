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
transactional or opaque state must count exactly once.

Under `LocalCluster` (``cluster.submit(..., faults=...)``) the same rules run in
the real worker processes. They travel as data (`Faults.to_wire`): every field
but ``where``, which goes by reference (``file.py:function``), so it must be a
function defined at module level of an importable file; a lambda or closure is
refused at submit. Each worker builds its rules again (`faulted_worker`) and
installs them as task hooks. ``index`` and ``times`` count over every worker
process, as in one process, through a small locked file of counters (so a
rule fired once does not fire again in a restarted worker). A ``delay`` there
holds the tuple back for ``seconds`` of real time (worker processes have no
virtual clock) and a thread of the worker puts it back. Each applied fault,
and each msg id a spout emits again (a replay), is appended to a file per
worker that `LocalTopology.faults` / `LocalTopology.replayed` read."""

from __future__ import annotations

import fcntl
import heapq
import json
import logging
import os
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import StormError
from ._runtime import HookChain, TaskHooks, Worker
from ._serialization import pack, unpack
from ._tuple import Tuple

if TYPE_CHECKING:
    from ._trace import Tracer

__all__ = ["FaultEvent", "Faults", "InjectedFault"]

log = logging.getLogger("storm.faults")

KINDS = ("drop", "delay", "duplicate", "fail", "crash")


class InjectedFault(StormError):
    """The exception a ``crash`` fault records for a bolt (not raised into the test)."""


@dataclass(frozen=True)
class FaultEvent:
    """One fault applied: its kind, the bolt task that received the tuple, the
    tuple's stream, source component and values, and when: seconds of the
    virtual clock in the in-process harness, seconds since the topology
    started under LocalCluster (where ``worker`` is the worker's index)."""

    kind: str
    component: str
    task: int
    stream: str
    source: str
    values: list[Any]
    at: float
    worker: int | None = None


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
    # In a worker process: the counters shared by every worker, and this rule's slot.
    shared: _SharedCounts | None = None
    slot: int = 0
    spent: bool = False  # a bounded rule that can never fire again (worker processes)

    def fires(self, component: str, task_id: int, tup: Tuple) -> bool:
        if component != self.bolt or (self.task is not None and task_id != self.task):
            return False
        if self.spent:
            return False
        if self.stream is not None and tup.stream != self.stream:
            return False
        if self.source is not None and tup.source_component != self.source:
            return False
        if self.where is not None and not self.where(tup):
            return False
        if self.shared is not None:
            if self.index is None and self.times is None:
                return True
            fired, self.spent = self.shared.claim(self.slot, self.index, self.times)
            return fired
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
    """The faults of one test run; pass it as ``faults=`` to TestTopology,
    run_topology or LocalCluster.submit. Every method returns the Faults, so
    rules chain::

        faults = Faults().crash("count", where=lambda t: t[0] == "cow").drop("split", index=2)

    (for LocalCluster, ``where=`` must be a module-level function instead of
    a lambda: its worker processes import it by name).
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
        (TestTopology.advance; run_topology advances past the last one); under
        LocalCluster, for ``seconds`` of real time (workers have no virtual clock)."""
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
        return self.fail(bolt, stream="commit", where=_TxidIs(txid), task=-1)

    def replay_failed(self, bolt: Any, txid: int) -> Faults:
        """Trident: fail batch ``txid`` at component ``bolt`` before any task
        commits it (its batch-done signal fails), so the coordinator replays it
        and every later batch in flight."""
        return self.fail(bolt, where=_TxidIs(txid, ("coord", "batch")))

    # -- what the harness calls --------------------------------------------
    def bind(self, owner: object, clock: Callable[[], float], bolts: dict[str, list[int]]) -> None:
        """Attach to one harness run; every rule must name one of its bolts
        (``bolts``: name -> task ids)."""
        if self._owner is not None and self._owner is not owner:
            raise StormError("this Faults is already used by another TestTopology or LocalCluster "
                             "topology; make one per run")
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

    def _record(self, event: FaultEvent) -> None:
        self.events.append(event)

    def _hold(self, task: Any, tup: Tuple, due: float) -> None:
        self._seq += 1
        heapq.heappush(self._held, _Held(due, self._seq, task, tup))

    # -- across processes (LocalCluster) -----------------------------------
    def to_wire(self) -> list[dict[str, Any]]:
        """The rules as plain data for worker processes (JSON). A ``where``
        goes by reference, so it must be a module-level function; anything
        else is refused here, before a worker starts."""
        return [_rule_to_wire(r) for r in self.rules]

    @classmethod
    def from_wire(cls, rules: Sequence[dict[str, Any]]) -> Faults:
        """The Faults `to_wire` described (in a worker process: imports each
        ``where`` by its reference)."""
        faults = cls()
        for i, w in enumerate(rules):
            try:
                faults.rules.append(_Rule(str(w["kind"]), str(w["bolt"]), w.get("stream"), w.get("source"),
                                          _where_from_wire(w.get("where")), w.get("index"), w.get("times"),
                                          float(w.get("seconds") or 0.0), w.get("task")))
            except (KeyError, TypeError, ValueError) as exc:
                raise StormError(f"fault rule {i} is malformed ({type(exc).__name__}: {exc}): {w!r}") from None
            if faults.rules[-1].kind not in KINDS:
                raise StormError(f"fault rule {i}: unknown kind {w['kind']!r}; kinds are {', '.join(KINDS)}")
        return faults

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
        self._record(FaultEvent(rule.kind, task.component, task.task_id, tup.stream,
                                tup.source_component, list(tup.values), now))
        kind = rule.kind
        if kind == "duplicate":
            copy = Tuple(list(tup.values), tup.meta, tup.source_task, None)
            self._exempt[id(copy)] = copy
            task.inbox.append(copy)
            return True
        if kind == "delay":
            self._hold(task, tup, now + rule.seconds)
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


# -- where= across processes ---------------------------------------------------
@dataclass(frozen=True)
class _TxidIs:
    """``where`` of the Trident replays: the tuple's first value is batch
    ``txid`` (on one of ``streams``; None: any). Data, not a closure, so the
    rule can go to worker processes."""

    txid: int
    streams: tuple[str, ...] | None = None

    def __call__(self, tup: Tuple) -> bool:
        return (self.streams is None or tup.stream in self.streams) and tup.values[0] == self.txid


_WHERE_HELP = ("under LocalCluster every worker process imports where= by name, so it must be a function "
               "defined at module level of an importable file or of the topology's file, e.g. "
               "`def is_moon(tup): return tup['word'] == 'moon'` and `where=is_moon`; lambdas and "
               "closures work only in the in-process harness (run_topology, TestTopology)")


def _rule_name(r: _Rule) -> str:
    return f"{r.kind}('{r.bolt}')"


def _where_ref(r: _Rule) -> dict[str, Any] | None:
    where = r.where
    if where is None:
        return None
    if isinstance(where, _TxidIs):
        return {"txid": where.txid, "streams": None if where.streams is None else list(where.streams)}
    qual = getattr(where, "__qualname__", None)
    modname = getattr(where, "__module__", None)
    if not isinstance(qual, str) or not isinstance(modname, str):
        raise StormError(f"{_rule_name(r)}: where= is {where!r}, which has no importable name; {_WHERE_HELP}")
    if "<lambda>" in qual:
        raise StormError(f"{_rule_name(r)}: where= is a lambda ({qual}); {_WHERE_HELP}")
    if "<locals>" in qual:
        raise StormError(f"{_rule_name(r)}: where= is {qual}, a function defined inside a function "
                         f"(a closure); {_WHERE_HELP}")
    module = sys.modules.get(modname)
    found: Any = module
    for part in qual.split("."):
        found = getattr(found, part, None)
    if module is None or found is not where:
        raise StormError(f"{_rule_name(r)}: where= {modname}.{qual} is not found by that name in its "
                         f"module (a bound method or a replaced name?); {_WHERE_HELP}")
    file = getattr(module, "__file__", None)
    if not file and modname == "__main__":
        raise StormError(f"{_rule_name(r)}: where= {qual} is defined in __main__ without a file (python -c or "
                         f"an interactive session), which worker processes cannot import; {_WHERE_HELP}")
    return {"ref": f"{file}:{qual}" if file else f"{modname}:{qual}"}


def _where_from_wire(w: Any) -> Callable[[Tuple], bool] | None:
    if w is None:
        return None
    if "txid" in w:
        streams = w.get("streams")
        return _TxidIs(w["txid"], None if streams is None else tuple(streams))
    from ._target import load_target  # worker start-up only: _target imports the topology layer

    ref = str(w["ref"])
    path, _, qual = ref.rpartition(":")
    first, *rest = qual.split(".")
    try:
        obj = load_target(f"{path}:{first}")
        for part in rest:
            obj = getattr(obj, part)
    except (StormError, AttributeError) as exc:
        raise StormError(f"fault rule where={ref}: cannot import it in the worker process: {exc}") from None
    if not callable(obj):
        raise StormError(f"fault rule where={ref} is {obj!r}, not a function")
    fn: Callable[[Tuple], bool] = obj
    return fn


def _rule_to_wire(r: _Rule) -> dict[str, Any]:
    return {"kind": r.kind, "bolt": r.bolt, "stream": r.stream, "source": r.source, "where": _where_ref(r),
            "index": r.index, "times": r.times, "seconds": r.seconds, "task": r.task}


# -- in a worker process --------------------------------------------------------
_SLOT = struct.Struct("<qq")  # a rule's (seen, fired) in the counters file


class _SharedCounts:
    """The (seen, fired) counters of every rule, in one file all workers of a
    topology share; a claim takes the file's lock, so ``index`` and ``times``
    count over every process, and survive a worker restart."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR)

    def claim(self, slot: int, index: int | None, times: int | None) -> tuple[bool, bool]:
        """One more matching tuple for rule `slot`: whether the rule fires on it,
        and whether it can never fire again."""
        off = slot * _SLOT.size
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            raw = os.pread(self.fd, _SLOT.size, off)
            seen, fired = _SLOT.unpack(raw) if len(raw) == _SLOT.size else (0, 0)
            n = seen
            seen += 1
            fires = (index is None or n == index) and (times is None or fired < times)
            if fires:
                fired += 1
            os.pwrite(self.fd, _SLOT.pack(seen, fired), off)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        spent = (index is not None and seen > index) or (times is not None and fired >= times)
        return fires, spent


def write_rules(directory: Path, faults: Faults, started: float) -> Path:
    """Write what the workers of a LocalCluster topology need to install
    `faults` (the rules, zeroed shared counters) into `directory`; returns the
    file to pass them (``--faults``)."""
    rules = faults.to_wire()
    counts = directory / "faults.counts"
    counts.write_bytes(b"\0" * (_SLOT.size * len(rules)))
    path = directory / "faults.json"
    path.write_text(json.dumps({"rules": rules, "counts": str(counts), "dir": str(directory),
                                "started": started}))
    return path


def fault_file(directory: str | os.PathLike[str], index: int) -> Path:
    """Where worker `index` records the faults it applied and its spouts' replays."""
    return Path(directory) / f"faults-{index}.events"


class _EventLog:
    """Appends records to a worker's fault file: one os.write per record
    (length-prefixed msgpack), so a worker killed with SIGKILL loses nothing
    it had recorded."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.lost = 0

    def write(self, record: list[Any]) -> None:
        data = pack(record)
        try:
            os.write(self.fd, struct.pack("<I", len(data)) + data)
        except OSError as exc:  # the fault still happens; only its report is lost
            self.lost += 1
            if self.lost == 1:
                log.warning("cannot record a fault in %s (%s); LocalTopology.faults() will miss it",
                            self.path, exc)


def _carried(value: Any) -> Any:
    """`value` if msgpack carries it, else its repr (a tuple's values or a msg
    id need not be msgpack-able when they never leave their worker)."""
    try:
        pack(value)
    except Exception:
        return repr(value)
    return value


def read_records(path: str | os.PathLike[str]) -> list[list[Any]]:
    """Every whole record of a fault file (a last one cut short by a kill is left out)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    out, pos = [], 0
    while pos + 4 <= len(data):
        (n,) = struct.unpack_from("<I", data, pos)
        if pos + 4 + n > len(data):
            break
        out.append(unpack(data[pos + 4:pos + 4 + n]))
        pos += 4 + n
    return out


class _WorkerFaults(Faults):
    """A worker process's copy of a test's Faults: shared counters, real-time
    delays released by a thread, events written to the worker's fault file."""

    def __init__(self, rules: Faults, counts: str, log: _EventLog, worker: int, started: float) -> None:
        super().__init__()
        self.rules = rules.rules
        shared = _SharedCounts(counts)
        for i, r in enumerate(self.rules):
            r.shared, r.slot = shared, i
        self.log = log
        self.worker = worker
        self.started = started
        self._clock = self.now
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def now(self) -> float:
        return time.time() - self.started

    def admit(self, task: Any, tup: Tuple) -> bool:
        try:
            return super().admit(task, tup)
        except Exception as exc:  # a user's where= that raises must not stop the worker
            task.record_error(exc, "fault where=")
            return True

    def _record(self, event: FaultEvent) -> None:
        self.log.write(["fault", self.worker, event.kind, event.component, event.task, event.stream,
                        event.source, [_carried(v) for v in event.values], event.at])

    def _hold(self, task: Any, tup: Tuple, due: float) -> None:
        with self._cond:
            self._seq += 1
            heapq.heappush(self._held, _Held(due, self._seq, task, tup))
            if self._thread is None:
                self._thread = threading.Thread(target=self._releaser, name="storm-fault-delay", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _releaser(self) -> None:
        # deque.append is atomic, and the worker's loop runs whatever a task's
        # inbox holds on its next pass.
        while True:
            with self._cond:
                wait = self.next_due() - self.now()
                if wait > 0:
                    self._cond.wait(min(wait, 1.0))
                    continue
                self.release(self.now())

    def replayed(self, task: Any, msg_id: Any) -> None:
        self.log.write(["replay", self.worker, task.component, task.task_id, _carried(msg_id), self.now()])


class _SpoutReplays(TaskHooks):
    """Tells the worker's fault file when a spout task emits a msg id it
    emitted before (a replay)."""

    def __init__(self, faults: _WorkerFaults) -> None:
        self.faults = faults
        self.seen: set[Any] = set()

    def emitted(self, task: Any, stream: str, values: Sequence[Any], targets: Sequence[int],
                third: Any, direct_task: int | None) -> None:
        if third is None:
            return
        try:
            if third in self.seen:
                self.faults.replayed(task, third)
            else:
                self.seen.add(third)
        except TypeError:  # an unhashable msg id cannot be told apart
            pass


def faulted_worker(path: str, spec: Any, assignment: dict[int, int], index: int, transport: Any = None
                   ) -> tuple[Worker, Tracer | None]:
    """A Worker of `spec` with the fault rules of file `path` (written by
    LocalTopology) installed as task hooks, before the tracer's if tracing is
    on: (worker, tracer or None)."""
    from ._trace import make_tracer  # the worker's start only

    conf = json.loads(Path(path).read_text())
    rules = Faults.from_wire(conf["rules"])
    faults = _WorkerFaults(rules, conf["counts"], _EventLog(str(fault_file(conf["dir"], index))), index,
                           float(conf["started"]))
    bolts = {r.bolt for r in faults.rules}
    tracer = make_tracer(spec)

    def hooks_for(ref: Any) -> TaskHooks | None:
        mine: TaskHooks | None = None
        if not ref.system:
            if ref.is_spout:
                mine = _SpoutReplays(faults)
            elif ref.component in bolts:
                mine = _FaultHook(faults)
        traced = tracer.hooks_for(ref) if tracer is not None else None
        if mine is not None and traced is not None:
            return HookChain([mine, traced])
        return mine if mine is not None else traced

    return Worker(spec, assignment, index, transport, hooks=hooks_for), tracer


def read_fault_files(files: Sequence[Path]) -> tuple[list[FaultEvent], list[tuple[float, str, int, Any]]]:
    """The faults applied and the spout replays (at, component, task, msg id)
    recorded in the workers' fault files, each in time order."""
    events: list[FaultEvent] = []
    replays: list[tuple[float, str, int, Any]] = []
    for f in files:
        for rec in read_records(f):
            if rec[0] == "fault" and len(rec) == 9:
                _, worker, kind, comp, task, stream, source, values, at = rec
                events.append(FaultEvent(kind, comp, task, stream, source, values, at, worker))
            elif rec[0] == "replay" and len(rec) == 6:
                _, worker, comp, task, msg_id, at = rec
                replays.append((at, comp, task, msg_id))
    events.sort(key=lambda e: e.at)
    replays.sort(key=lambda r: r[0])
    return events, replays
