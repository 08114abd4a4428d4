"""The spout and bolts a Trident topology compiles to.

`MasterCoordinator` (a spout, one task) numbers batches with txids and emits
[txid, attempt] on stream "batch" (to every emitter task) with a message id, so
the batch's whole tuple tree is acked when every task has finished it; then,
strictly in txid order, [txid, attempt] on stream "commit" (to every task of a
persisting component). A failed batch or commit is re-emitted with a new
attempt, together with every later batch in flight. The last committed txid is
stored durably (open_meta: a SQLite MetaStore, or the Redis / PostgreSQL server
of the topology's state), so a restarted coordinator resumes after it.

`TridentBolt` runs one component's pipes. Data tuples carry [txid, attempt,
*values]; each task tells every task downstream how many tuples it sent it for a
batch on the direct stream "coord", after it finished the batch itself; a task
has finished a batch when every upstream task's count arrived and matches what
it received. Coord tuples are held (not acked) until then, so a batch's tree is
complete only when every task finished it. A higher attempt of a txid replaces
what a task had of a lower one; tuples of a lower attempt are dropped."""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._component import Bolt, Spout
from .._context import TopologyContext
from .._tuple import Tuple
from ._backends import PostgresMetaStore, PostgresState, RedisMetaStore, RedisState
from ._pipes import BatchPipe, PersistPipe, Pipe
from ._spouts import Meta, MetaStore, TridentSpout
from ._state import StateFactory, TxidMapState

BATCH_STREAM = "batch"
COMMIT_STREAM = "commit"
COORD_STREAM = "coord"
TXID = "$txid"
ATTEMPT = "$attempt"
INTERVAL_KEY = "topology.trident.batch.emit.interval.millis"
ATTEMPT_BLOCK = 60_000_000  # attempt ids reserved per metadata write (a minute of microseconds)
META_KEY = "topology.trident.meta.path"
META_BACKEND_KEY = "topology.trident.meta.backend"


def meta_path(conf: dict[str, Any]) -> str:
    """Where the topology's batch metadata lives (config or a default per name)."""
    path = conf.get(META_KEY)
    if path:
        return str(path)
    base = conf.get("storm.local.dir") or os.path.join(tempfile.gettempdir(), "storm-local")
    return os.path.join(str(base), "trident", f"{conf.get('topology.name', 'trident')}.meta.sqlite")


def meta_server_state(states: Sequence[StateFactory]) -> StateFactory | None:
    """The state whose Redis / PostgreSQL server also keeps the batch metadata
    (the first such of the topology's states), or None."""
    for f in states:
        if isinstance(f, (RedisState, PostgresState)):
            return f
    return None


def open_meta(conf: dict[str, Any], server_state: StateFactory | None = None) -> Meta:
    """The batch metadata store: a SQLite file (`topology.trident.meta.path`,
    else the default per topology name) unless the topology keeps a state on a
    Redis / PostgreSQL server and neither that path nor
    ``topology.trident.meta.backend: sqlite`` is set: then on that server,
    next to the state (keys `<hash>:trident-meta:*`, tables `<table>__meta_*`),
    so that a worker restarted on another host resumes where it was."""
    if conf.get(META_KEY) or server_state is None or conf.get(META_BACKEND_KEY) == "sqlite":
        return MetaStore(meta_path(conf))
    if isinstance(server_state, RedisState):
        return RedisMetaStore(server_state.url, f"{server_state.name}:trident-meta")
    assert isinstance(server_state, PostgresState)
    return PostgresMetaStore(server_state.dsn, f"{server_state.table}__meta")


@dataclass
class _Active:
    attempt: int
    state: str  # "emit" (to be emitted), "running", "done" (tree acked), "committing"


class MasterCoordinator(Spout):
    """Numbers batches and orders commits; see the module docstring."""

    outputs: ClassVar[Any] = None  # declared by the compiler
    meta_state: ClassVar[StateFactory | None] = None  # set by the compiler: see open_meta

    def open(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.meta = open_meta(conf, self.meta_state)
        self.name = str(conf.get("topology.name"))
        self.committed = self.meta.committed(self.name)
        pending = conf.get("topology.max.spout.pending")
        self.max_pending = max(1, int(pending)) if pending else 1
        self.interval = float(conf.get(INTERVAL_KEY) or 0) / 1000.0
        self.active: dict[int, _Active] = {}
        # Attempt ids only grow, across restarts too: a new incarnation starts
        # above every id the old one may have used (reserved in blocks).
        self.reserved = self.meta.reserved_attempts(self.name)
        self.last_attempt = self.reserved
        self.next_emit = 0.0
        self.commit_log: list[int] = []

    def _attempt(self) -> int:
        # Microseconds of the wall clock, never below the last one nor below
        # what an earlier incarnation reserved: a new attempt supersedes every
        # older one in every bolt, even if the clock stepped back.
        self.last_attempt = max(self.last_attempt + 1, time.time_ns() // 1000)
        if self.last_attempt > self.reserved:
            self.reserved = self.last_attempt + ATTEMPT_BLOCK
            self.meta.reserve_attempts(self.name, self.reserved)
        return self.last_attempt

    def next_tuple(self) -> None:
        active = self.active
        # Re-emit batches that failed (in txid order).
        for txid in sorted(active):
            a = active[txid]
            if a.state == "emit":
                a.state = "running"
                self.emit([txid, a.attempt], stream=BATCH_STREAM, msg_id=("b", txid, a.attempt))
        first = self.committed + 1
        head = active.get(first)
        if head is not None and head.state == "done":
            head.state = "committing"
            self.emit([first, head.attempt], stream=COMMIT_STREAM, msg_id=("c", first, head.attempt))
        now = time.monotonic()
        if len(active) < self.max_pending and now >= self.next_emit:
            txid = max(active) + 1 if active else first
            a = _Active(self._attempt(), "running")
            active[txid] = a
            self.next_emit = now + self.interval
            self.emit([txid, a.attempt], stream=BATCH_STREAM, msg_id=("b", txid, a.attempt))

    def ack(self, msg_id: Any) -> None:
        kind, txid, attempt = msg_id
        a = self.active.get(txid)
        if a is None or a.attempt != attempt:
            return  # an attempt given up on, or of an earlier incarnation
        if kind == "b":
            a.state = "done"
        elif kind == "c" and txid == self.committed + 1:
            self.committed = txid
            self.meta.set_committed(self.name, txid)
            del self.active[txid]

    def fail(self, msg_id: Any) -> None:
        kind, txid, attempt = msg_id
        a = self.active.get(txid)
        if a is None or a.attempt != attempt:
            return
        # This batch and every later one in flight start again, in order (an
        # opaque spout's later batches begin where this one will now end).
        for t, later in self.active.items():
            if t >= txid:
                later.attempt = self._attempt()
                later.state = "emit"

    def close(self) -> None:
        self.meta.close()


@dataclass
class BatchRecord:
    """What one task knows of one attempt of one batch."""

    txid: int
    attempt: int
    bolt: TridentBolt
    received: Counter[int] = field(default_factory=Counter)
    expected: dict[int, int] = field(default_factory=dict)
    held: list[Tuple] = field(default_factory=list)
    sent: Counter[int] = field(default_factory=Counter)
    aggs: dict[int, Any] = field(default_factory=dict)

    failed: bool = False

    def emit(self, stream: str, values: list[Any]) -> None:
        # Data tuples are not anchored: the counts on the coord stream already
        # tell a task whether it got every tuple of a batch, and only coord
        # tuples (held until the batch is finished) keep the batch's tree open.
        sent = self.sent
        for t in self.bolt.emit([self.txid, self.attempt, *values], stream=stream):
            sent[t] += 1


class TridentBolt(Bolt):
    """One compiled Trident component; class attributes are set by the compiler."""

    root: ClassVar[Pipe]
    pipes: ClassVar[list[Pipe]]
    spout: ClassVar[TridentSpout | None] = None
    upstream: ClassVar[tuple[str, ...]] = ()
    downstream: ClassVar[tuple[str, ...]] = ()
    # A join component: (source component, stream) -> the pipe its tuples enter.
    side_roots: ClassVar[dict[tuple[str, str], Pipe]] = {}
    meta_state: ClassVar[StateFactory | None] = None  # set by the compiler: see open_meta
    outputs: ClassVar[Any] = None

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.task = context.task_id
        self.component = context.component_id
        self.up_tasks = frozenset(t for c in self.upstream for t in context.get_component_tasks(c))
        self.down_tasks = sorted({t for c in self.downstream for t in context.get_component_tasks(c)})
        self.batches: dict[int, BatchRecord] = {}
        self.finished: dict[int, BatchRecord] = {}  # committers: awaiting the commit
        self.aggregators = [p for p in self.pipes if isinstance(p, BatchPipe)]
        self.persisters = [p for p in self.pipes if isinstance(p, PersistPipe)]
        self.states: dict[int, TxidMapState] = {}
        self.meta: Meta | None = None
        if self.spout is not None:
            self.meta = open_meta(conf, self.meta_state)
            n = len(context.get_component_tasks(self.component))
            self.partitions = [p for p in range(self.spout.partitions) if p % n == context.this_task_index]
            self.positions: dict[int, int] = {}  # non-transactional spouts: offsets in memory

    # -- batches ------------------------------------------------------------
    def _record(self, txid: int, attempt: int) -> BatchRecord | None:
        b = self.batches.get(txid)
        if b is not None:
            if attempt == b.attempt:
                return b
            if attempt < b.attempt:
                return None
            for t in b.held:  # the older attempt was given up on
                self.ack(t)
        b = self.batches[txid] = BatchRecord(txid, attempt, self)
        return b

    def execute(self, tup: Tuple) -> None:
        stream = tup.stream
        values = tup.values
        if stream == COMMIT_STREAM:
            self._commit(tup)
            return
        txid, attempt = values[0], values[1]
        if stream == BATCH_STREAM:
            self._emit_batch(tup, txid, attempt)
            return
        b = self._record(txid, attempt)
        if b is None:
            self.ack(tup)
            return
        src = tup.source_task
        if stream == COORD_STREAM:
            b.expected[src] = values[2]
            b.held.append(tup)
        else:
            b.received[src] += 1
            if not b.failed:
                try:
                    root = self.side_roots[(tup.meta.component, stream)] if self.side_roots else self.root
                    root.push(list(values[2:]), b)
                except Exception as exc:
                    # The batch fails when this task has all of it (below).
                    b.failed = True
                    self.report_error(exc)
            self.ack(tup)
        if len(b.expected) == len(self.up_tasks) and all(
                b.received[t] == n for t, n in b.expected.items()):
            self._finish(b, b.held)

    def _emit_batch(self, tup: Tuple, txid: int, attempt: int) -> None:
        spout = self.spout
        assert spout is not None and self.meta is not None
        b = self._record(txid, attempt)
        if b is None:
            self.ack(tup)
            return
        if spout.kind == "non_transactional":
            try:
                for p in self.partitions:
                    rows = spout.read(p, self.positions.get(p, 0), spout.batch_size)
                    self.positions[p] = self.positions.get(p, 0) + len(rows)
                    for row in rows:
                        self.root.push(list(row), b)
            except Exception as exc:
                b.failed = True
                self.report_error(exc)
            self._finish(b, [tup])
            return
        # A source whose offsets may have gaps (Kafka) reads a range and says where it ended.
        reader = getattr(spout, "read_range", None)
        for p in self.partitions:
            stored = self.meta.get(self.component, p, txid)
            span = stored if spout.kind == "transactional" else None
            if span is None:
                start = 0 if txid == 1 else None
                prev = self.meta.get(self.component, p, txid - 1) if txid > 1 else None
                if prev is not None:
                    start = prev[1]
                if start is None:
                    # The previous batch never reached this task (lost with a
                    # worker): it is replayed first, then this one.
                    del self.batches[txid]
                    self.fail(tup)
                    return
                if reader is not None:
                    rows, stop = reader(p, start, spout.batch_size, None)
                    span = (start, stop)
                else:
                    rows = spout.read(p, start, spout.batch_size)
                    span = (start, start + len(rows))
                if stored is not None and stored != span:
                    # Opaque: this replay holds other tuples than an earlier attempt.
                    self.log(f"opaque replay: txid {txid} partition {p} was {stored}, now {span}")
                self.meta.put(self.component, p, txid, span[0], span[1], drop_later=spout.kind != "transactional")
            else:
                if reader is not None:
                    rows, stop = reader(p, span[0], span[1] - span[0], span[1])
                    complete = stop == span[1]
                else:
                    rows = spout.read(p, span[0], span[1] - span[0])
                    complete = len(rows) == span[1] - span[0]
                if not complete:
                    raise RuntimeError(f"transactional spout of '{self.component}': partition {p} "
                                       f"no longer holds offsets {span} of txid {txid}")
            try:
                for row in rows:
                    self.root.push(list(row), b)
            except Exception as exc:
                b.failed = True
                self.report_error(exc)
                break
        self._finish(b, [tup])

    def _finish(self, b: BatchRecord, anchors: list[Tuple]) -> None:
        if not b.failed:
            try:
                for agg in self.aggregators:
                    agg.finish(b)
            except Exception as exc:
                b.failed = True
                self.report_error(exc)
        if b.failed:
            # Failing what this task holds fails the batch's tree at once: the
            # coordinator replays it.
            del self.batches[b.txid]
            for held in anchors:
                self.fail(held)
            return
        for t in self.down_tasks:
            self.emit([b.txid, b.attempt, b.sent[t]], stream=COORD_STREAM, direct_task=t, anchors=anchors)
        for held in anchors:
            self.ack(held)
        del self.batches[b.txid]
        if self.persisters:
            b.held = []
            self.finished[b.txid] = b
        for old in [t for t in self.batches if t < b.txid - 1000]:
            del self.batches[old]

    def _commit(self, tup: Tuple) -> None:
        txid, attempt = tup.values[0], tup.values[1]
        for old in [t for t in self.finished if t < txid]:
            del self.finished[old]
        b = self.finished.get(txid)
        if b is None or b.attempt != attempt:
            # This task did not finish that attempt (it restarted since): the
            # batch is replayed.
            self.fail(tup)
            return
        try:
            for p in self.persisters:
                state = self.states.get(p.pid)
                if state is None:
                    state = self.states[p.pid] = p.factory.make(self.task)
                p.commit(state, txid, b.aggs.get(p.pid, {}))
        except Exception as exc:
            self.report_error(exc)
            self.fail(tup)
            return
        del self.finished[txid]
        self.ack(tup)

    def cleanup(self) -> None:
        if self.meta is not None:
            self.meta.close()
        for state in self.states.values():
            state.backing.close()


def stream_fields(fields: Sequence[str]) -> tuple[str, ...]:
    return (TXID, ATTEMPT, *fields)
