"""Trident spouts (batch sources) and the durable metadata store behind them.

A spout here is a description of a partitioned source; the emitter bolt of the
compiled topology asks it for the tuples of one partition from an offset. The
metadata store (a SQLite file) keeps, per txid and partition, the offsets a
batch covered, and the coordinator's last committed txid, so that a restarted
worker re-emits a transactional batch exactly and resumes where it was."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .._errors import StormError
from .._sqlite import open_shared


class TridentSpout:
    """A partitioned source of batches.

    `kind` is "transactional" (a txid always replays exactly the same tuples:
    offsets are stored on first emit and reused), "opaque" (a replayed txid
    starts where the previous txid ended and takes what is available now, so
    its content may differ; each tuple still lands in exactly one committed
    batch) or "non_transactional" (no replay: at-most-once)."""

    kind: str = "transactional"

    def __init__(self, fields: Sequence[str], batch_size: int = 100, partitions: int = 1) -> None:
        if batch_size < 1 or partitions < 1:
            raise StormError("a Trident spout needs batch_size >= 1 and partitions >= 1")
        self.fields = tuple(fields)
        self.batch_size = batch_size
        self.partitions = partitions

    def read(self, partition: int, offset: int, max_count: int) -> list[Sequence[Any]]:
        """Up to `max_count` tuples of `partition` from `offset` (what is available now)."""
        raise NotImplementedError


class TransactionalListSpout(TridentSpout):
    """A transactional spout over a list (an append-only source): item i is in
    partition i % partitions. `items` may be a callable, called once per process."""

    kind = "transactional"

    def __init__(self, items: Sequence[Sequence[Any]] | Callable[[], Sequence[Sequence[Any]]],
                 fields: Sequence[str], batch_size: int = 100, partitions: int = 1) -> None:
        super().__init__(fields, batch_size, partitions)
        self._items = items
        self._parts: list[list[Sequence[Any]]] | None = None

    def _partition(self, p: int) -> list[Sequence[Any]]:
        if self._parts is None:
            items = self._items() if callable(self._items) else self._items
            self._parts = [list(items[i::self.partitions]) for i in range(self.partitions)]
        return self._parts[p]

    def available(self, partition: int) -> int:
        return len(self._partition(partition))

    def read(self, partition: int, offset: int, max_count: int) -> list[Sequence[Any]]:
        part = self._partition(partition)
        end = min(offset + max_count, self.available(partition))
        return part[offset:end] if end > offset else []


class OpaqueListSpout(TransactionalListSpout):
    """An opaque spout over a list whose items become visible at `rate` items a
    second per partition (None: all at once), counted from `start` (a
    time.time() value every process shares; None: when this process first
    reads): a batch replayed later holds more tuples than its first attempt."""

    kind = "opaque"

    def __init__(self, items: Sequence[Sequence[Any]] | Callable[[], Sequence[Sequence[Any]]],
                 fields: Sequence[str], batch_size: int = 100, partitions: int = 1,
                 rate: float | None = None, start: float | None = None) -> None:
        super().__init__(items, fields, batch_size, partitions)
        self.rate = rate
        self._t0 = start

    def available(self, partition: int) -> int:
        total = len(self._partition(partition))
        if self.rate is None:
            return total
        if self._t0 is None:
            self._t0 = time.time()
        return min(total, max(0, int((time.time() - self._t0) * self.rate)))


class NonTransactionalListSpout(TransactionalListSpout):
    """A spout with no replay guarantee: each emitter task reads on from where
    it was in memory, and a failed batch's tuples are not emitted again
    (at-most-once; a restarted worker starts its partitions over)."""

    kind = "non_transactional"


class Meta(Protocol):
    """What the coordinator and emitters need of a metadata store (the SQLite
    MetaStore below; RedisMetaStore / PostgresMetaStore in _backends)."""

    def get(self, comp: str, part: int, txid: int) -> tuple[int, int] | None: ...

    def put(self, comp: str, part: int, txid: int, start: int, stop: int, drop_later: bool) -> None: ...

    def committed(self, name: str) -> int: ...

    def set_committed(self, name: str, txid: int) -> None: ...

    def reserved_attempts(self, name: str) -> int: ...

    def reserve_attempts(self, name: str, upto: int) -> None: ...

    def close(self) -> None: ...


class MetaStore:
    """Batch offsets per (component, partition, txid) and the last committed
    txid of a topology, in a SQLite file every worker of the topology opens."""

    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        # Durable across a killed process (WAL, synchronous=NORMAL); only a power
        # loss may drop the last commits, which then replay.
        self.db = open_shared(path, [
            "CREATE TABLE IF NOT EXISTS batch_meta (comp TEXT, part INTEGER, txid INTEGER, "
            "start INTEGER, stop INTEGER, PRIMARY KEY (comp, part, txid))",
            "CREATE TABLE IF NOT EXISTS coordinator (name TEXT PRIMARY KEY, committed INTEGER)",
            "CREATE TABLE IF NOT EXISTS attempts (name TEXT PRIMARY KEY, reserved INTEGER)",
        ])

    def get(self, comp: str, part: int, txid: int) -> tuple[int, int] | None:
        row = self.db.execute("SELECT start, stop FROM batch_meta WHERE comp=? AND part=? AND txid=?",
                              (comp, part, txid)).fetchone()
        return (int(row[0]), int(row[1])) if row else None

    def put(self, comp: str, part: int, txid: int, start: int, stop: int, drop_later: bool) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            if drop_later:
                self.db.execute("DELETE FROM batch_meta WHERE comp=? AND part=? AND txid>?", (comp, part, txid))
            self.db.execute("INSERT OR REPLACE INTO batch_meta VALUES (?, ?, ?, ?, ?)",
                            (comp, part, txid, start, stop))

    def committed(self, name: str) -> int:
        row = self.db.execute("SELECT committed FROM coordinator WHERE name=?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def set_committed(self, name: str, txid: int) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT OR REPLACE INTO coordinator VALUES (?, ?)", (name, txid))
            # Offsets of long-committed batches are never read again.
            self.db.execute("DELETE FROM batch_meta WHERE txid < ?", (txid - 100,))

    def reserved_attempts(self, name: str) -> int:
        row = self.db.execute("SELECT reserved FROM attempts WHERE name=?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def reserve_attempts(self, name: str, upto: int) -> None:
        """Attempt ids up to `upto` may be in use: a restarted coordinator starts above."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT OR REPLACE INTO attempts VALUES (?, ?)", (name, upto))

    def close(self) -> None:
        self.db.close()
