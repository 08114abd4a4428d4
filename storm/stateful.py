"""Stateful bolts (storm.stateful): a key-value state per bolt task, saved at every checkpoint and
restored when the task starts again (after a worker restart), in SQLite by
default. A `CheckpointSpout` emits a checkpoint tuple every
``topology.state.checkpoint.interval.ms`` to every task of the stateful bolts
that subscribe to it; on it, a task writes the keys changed since the last
checkpoint in one SQLite transaction and only then acks the input tuples it
executed since, so every input is either in the saved state or still pending
at its spout (and replayed after a crash): state updates are at-least-once.
This module owns the state stores, the checkpoint spout and `StatefulBolt`; it
does not touch the runtime.

Example::

    class Counter(StatefulBolt):
        outputs = ["word", "count"]
        def execute(self, tup):
            n = self.state.get(tup[0], 0) + 1
            self.state[tup[0]] = n
            self.emit([tup[0], n], anchors=[tup])
            self.ack(tup)          # held until the next checkpoint is saved

    class Counts(Topology):
        checkpoint = CheckpointSpout.spec()
        words = WordSpout.spec()
        count = Counter.spec(inputs={words: Grouping.fields("word")}, checkpoints=checkpoint)
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import msgpack

from ._component import Bolt, ComponentSpec, Spout, Stream
from ._context import TopologyContext
from ._errors import TopologyError
from ._grouping import Grouping
from ._tuple import Tuple

if TYPE_CHECKING:
    from ._topology import TopologySpec

__all__ = [
    "CHECKPOINT_STREAM",
    "CheckpointSpout",
    "KeyValueState",
    "SqliteStateStore",
    "StatefulBolt",
]

CHECKPOINT_STREAM = "checkpoint"
INTERVAL_KEY = "topology.state.checkpoint.interval.ms"
DIR_KEY = "topology.state.dir"
_DELETED = object()


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _unpack_key(data: bytes) -> Any:
    # Keys come back hashable: a tuple key is stored as an array and read as a tuple.
    return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=False)


class SqliteStateStore:
    """One task's committed state in a SQLite file: rows (key, value) and the
    txid of the last checkpoint. Writes happen in one transaction per commit."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER)")

    def load(self) -> tuple[dict[Any, Any], int]:
        data = {_unpack_key(k): _unpack(v) for k, v in self.db.execute("SELECT k, v FROM kv")}
        row = self.db.execute("SELECT value FROM meta WHERE name = 'txid'").fetchone()
        return data, int(row[0]) if row else 0

    def commit(self, txid: int, changed: Mapping[Any, Any], deleted: Sequence[Any]) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            if deleted:
                db.executemany("DELETE FROM kv WHERE k = ?", [(_pack(k),) for k in deleted])
            if changed:
                db.executemany("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)",
                               [(_pack(k), _pack(v)) for k, v in changed.items()])
            db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('txid', ?)", (txid,))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


class KeyValueState(MutableMapping[Any, Any]):
    """A dict of msgpack-able keys and values that remembers what changed since
    the last commit. ``txid`` is the last checkpoint saved."""

    def __init__(self, store: SqliteStateStore | None = None) -> None:
        self.store = store
        self._data: dict[Any, Any] = {}
        self._changed: dict[Any, Any] = {}
        self.txid = 0
        if store is not None:
            self._data, self.txid = store.load()

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._data[key] = value
        self._changed[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._data[key]
        self._changed[key] = _DELETED

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    @property
    def dirty(self) -> int:
        """Keys changed since the last commit."""
        return len(self._changed)

    def commit(self, txid: int) -> None:
        changed = {k: v for k, v in self._changed.items() if v is not _DELETED}
        deleted = [k for k, v in self._changed.items() if v is _DELETED]
        if self.store is not None:
            self.store.commit(txid, changed, deleted)
        self._changed.clear()
        self.txid = txid


def _check_timeout(conf: Mapping[str, Any], owner: str) -> None:
    interval = float(conf.get(INTERVAL_KEY, 1000.0)) / 1000.0
    timeout = float(conf.get("topology.message.timeout.secs", 30.0))
    if conf.get("topology.acker.executors") != 0 and timeout <= 2 * interval:
        raise TopologyError(
            f"stateful bolt '{owner}': acks are held until a checkpoint is saved, "
            f"so topology.message.timeout.secs ({timeout:g}) must exceed twice "
            f"{INTERVAL_KEY} ({interval:g}s)"
        )


class CheckpointSpout(Spout):
    """Emits ``[txid]`` on the ``checkpoint`` stream every
    ``topology.state.checkpoint.interval.ms`` (txids keep increasing across
    restarts: they start from the wall clock in milliseconds)."""

    outputs: ClassVar[Any] = [Stream(("txid",), name=CHECKPOINT_STREAM)]

    def open(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.interval = float(conf.get(INTERVAL_KEY, 1000.0)) / 1000.0
        self.next_at = time.monotonic() + self.interval
        self.txid = int(time.time() * 1000)

    def next_tuple(self) -> None:
        now = time.monotonic()
        if now >= self.next_at:
            self.next_at = now + self.interval
            self.txid = max(self.txid + 1, int(time.time() * 1000))
            self.emit([self.txid], stream=CHECKPOINT_STREAM)


def _intercept(execute: Callable[[Any, Tuple], None]) -> Callable[[Any, Tuple], None]:
    @functools.wraps(execute)
    def execute_or_checkpoint(self: StatefulBolt, tup: Tuple) -> None:
        if tup.meta.stream == CHECKPOINT_STREAM and tup.meta.component in self._checkpointers:
            self._checkpoint(int(tup.values[0]))
        else:
            execute(self, tup)

    execute_or_checkpoint._storm_checkpoint = True  # type: ignore[attr-defined]
    return execute_or_checkpoint


class StatefulBolt(Bolt):
    """A bolt with ``self.state``, a KeyValueState restored at start.

    Write ``execute`` as usual; ``ack`` calls are held and made after the next
    checkpoint is saved. Override ``init_state(state)`` to react to the restored
    state, and ``pre_commit(txid)`` to put derived data into the state right
    before it is saved. Declare it with ``spec(..., checkpoints=checkpoint_spout)``.
    The state lives in ``<topology.state.dir>/<topology>/<component>-<task>.sqlite``.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        ex = cls.__dict__.get("execute")
        if ex is not None and not getattr(ex, "_storm_checkpoint", False):
            setattr(cls, "execute", _intercept(ex))  # noqa: B010 - wrapping the subclass method

    @classmethod
    def spec(cls, name: str | None = None, inputs: Mapping[Any, Grouping] | Sequence[Any] | None = None,
             par: int = 1, config: Mapping[str, Any] | None = None,
             outputs: Sequence[str | Stream] | None = None, *,
             checkpoints: ComponentSpec | str | None = None) -> ComponentSpec:
        """Declare the bolt; ``checkpoints`` is the CheckpointSpout it follows."""
        if checkpoints is None:
            raise TopologyError(
                f"stateful bolt '{name or cls.__name__}' needs checkpoints=<a CheckpointSpout spec>"
            )
        merged: dict[Any, Grouping] = (
            dict(inputs) if isinstance(inputs, Mapping) else {src: Grouping.SHUFFLE for src in inputs or ()}
        )
        src = checkpoints[CHECKPOINT_STREAM] if isinstance(checkpoints, ComponentSpec) else (
            checkpoints, CHECKPOINT_STREAM)
        merged[src] = Grouping.all()
        return super().spec(name=name, inputs=merged, par=par, config=config, outputs=outputs)

    # -- user hooks ----------------------------------------------------------------
    def init_state(self, state: KeyValueState) -> None:
        """Called in prepare with the restored state (empty on the first start)."""

    def pre_commit(self, txid: int) -> None:
        """Called right before the state is saved at checkpoint ``txid``."""

    @classmethod
    def validate_topology(cls, spec: TopologySpec, name: str) -> None:
        """Build-time check of this bolt in a built topology (see _check_timeout)."""
        conf = dict(spec.config)
        conf.update(spec.components[name].config)
        _check_timeout(conf, name)

    # -- runtime side ----------------------------------------------------------------
    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        """Restores the state; subclasses that override prepare must call super()."""
        _check_timeout(conf, context.component_id)
        self._checkpointers = frozenset(
            c for (c, s) in context.get_this_sources() if s == CHECKPOINT_STREAM)
        base = conf.get(DIR_KEY) or os.path.join(str(conf.get("storm.local.dir") or "."), "storm-state")
        path = Path(str(base)) / context.topology_name / f"{context.component_id}-{context.task_id}.sqlite"
        self.state = KeyValueState(SqliteStateStore(path))
        self.checkpoints = 0
        self._held: list[Tuple] = []
        real_ack = self.ack
        self._real_ack = real_ack
        held = self._held
        self.ack = held.append  # type: ignore[method-assign,assignment]
        self.init_state(self.state)

    def _checkpoint(self, txid: int) -> None:
        if txid <= self.state.txid:
            return  # a checkpoint we already saved (or an old one)
        self.pre_commit(txid)
        self.state.commit(txid)
        self.checkpoints += 1
        held, ack = self._held, self._real_ack
        for t in held:
            ack(t)
        held.clear()

    def cleanup(self) -> None:
        # Not saved at shutdown: the held inputs are replayed instead, so a
        # state without them stays consistent with what the spouts know.
        store = self.state.store
        if store is not None:
            store.close()
