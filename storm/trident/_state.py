"""Trident state: the txid update rules (transactional and opaque values), a map
state that applies one batch's updates per commit through those rules with a
cache of hot keys, and the backends it stores raw values in (in-memory for
tests, SQLite by default). Owns nothing of the runtime: the committer bolt calls
`TxidMapState.apply` once per batch commit, in txid order."""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

from .._errors import StormError
from .._sqlite import open_shared

Kind = Literal["transactional", "opaque", "non_transactional"]
KINDS: tuple[str, ...] = ("transactional", "opaque", "non_transactional")
Updater = Callable[[Any], Any]


def transactional_update(stored: Sequence[Any] | None, txid: int, update: Updater) -> list[Any] | None:
    """Transactional value [txid, value]: a txid already applied is skipped
    (returns None: nothing to write), since a transactional spout replays a txid
    with exactly the same tuples."""
    if stored is not None and stored[0] == txid:
        return None
    return [txid, update(stored[1] if stored is not None else None)]


def opaque_update(stored: Sequence[Any] | None, txid: int, update: Updater) -> list[Any]:
    """Opaque value [txid, curr, prev]: a replay of the txid last applied may
    carry different tuples, so it is recomputed from prev (the value before that
    txid); any other txid builds on curr."""
    if stored is None:
        base = None
    elif stored[0] == txid:
        base = stored[2]
    else:
        base = stored[1]
    return [txid, update(base), base]


def current_value(kind: str, stored: Sequence[Any] | None) -> Any:
    """The user-visible value of a raw stored value."""
    if stored is None:
        return None
    if kind == "non_transactional":
        return stored[0]
    return stored[1]


class Backing(Protocol):
    """Where raw values live: keys are strings, values JSON-able lists."""

    def multi_get(self, keys: Sequence[str]) -> list[Any]: ...

    def multi_put(self, items: Mapping[str, Any]) -> None: ...

    def begin(self, txid: int) -> None: ...

    def commit(self, txid: int, task: int) -> None: ...

    def rollback(self) -> None: ...

    def commits(self) -> list[tuple[int, int]]: ...

    def close(self) -> None: ...


def encode_key(key: Sequence[Any]) -> str:
    """A group key (the values of the group_by fields) as the stored string."""
    return json.dumps(list(key), separators=(",", ":"), ensure_ascii=False)


class TxidMapState:
    """A MapState with txid semantics over a Backing, with an LRU cache.

    ``apply(txid, {key: fn})`` runs in one backend transaction: it reads the keys
    (cache first), computes each new value by the rule of `kind`, writes them and
    records the commit (txid, task) so tests can check commits ran in txid order.
    """

    def __init__(self, backing: Backing, kind: str, cache_size: int = 10_000, task: int = 0) -> None:
        if kind not in KINDS:
            raise StormError(f"state kind {kind!r} is unknown; use one of {', '.join(KINDS)}")
        self.backing = backing
        self.kind = kind
        self.cache_size = cache_size
        self.task = task
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self.cache_hits = 0
        self.cache_misses = 0

    def _read(self, keys: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        missing: list[str] = []
        for k in keys:
            if k in self._cache:
                self._cache.move_to_end(k)
                out[k] = self._cache[k]
            else:
                missing.append(k)
        self.cache_hits += len(keys) - len(missing)
        self.cache_misses += len(missing)
        if missing:
            for k, v in zip(missing, self.backing.multi_get(missing), strict=True):
                out[k] = v
        return out

    def apply(self, txid: int, updates: Mapping[str, Updater]) -> None:
        """Apply one batch (txid) to the state, atomically."""
        self.backing.begin(txid)
        try:
            stored = self._read(list(updates))
            writes: dict[str, Any] = {}
            for k, fn in updates.items():
                old = stored[k]
                if self.kind == "transactional":
                    new = transactional_update(old, txid, fn)
                elif self.kind == "opaque":
                    new = opaque_update(old, txid, fn)
                else:
                    new = [fn(old[0] if old is not None else None)]
                if new is not None:
                    writes[k] = new
            if writes:
                self.backing.multi_put(writes)
            self.backing.commit(txid, self.task)
        except BaseException:
            self.backing.rollback()
            self._cache.clear()  # what was read may not match what is stored
            raise
        for k, v in stored.items():
            self._cache[k] = writes.get(k, v)
            self._cache.move_to_end(k)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def get(self, keys: Sequence[str]) -> list[Any]:
        """Current values of `keys` (None where absent), read from the backend."""
        return [current_value(self.kind, v) for v in self.backing.multi_get(list(keys))]


class StateFactory:
    """Describes a state in a topology; `make` opens it in a worker process."""

    kind: str = "transactional"
    cache_size: int = 10_000

    def backing(self) -> Backing:
        raise NotImplementedError

    def make(self, task: int) -> TxidMapState:
        return TxidMapState(self.backing(), self.kind, self.cache_size, task)

    def read(self, keys: Sequence[Sequence[Any]]) -> list[Any]:
        """Current values for group keys (lists of group values), for queries."""
        b = self.backing()
        try:
            return [current_value(self.kind, v) for v in b.multi_get([encode_key(k) for k in keys])]
        finally:
            b.close()

    def read_all(self) -> dict[str, Any]:
        """Every key (encoded) and current value: for tests and small states."""
        raise NotImplementedError

    def commits(self) -> list[tuple[int, int]]:
        """(task, txid) of every applied commit, in commit order."""
        b = self.backing()
        try:
            return b.commits()
        finally:
            b.close()


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise StormError(f"state kind {kind!r} is unknown; use one of {', '.join(KINDS)}")
    return kind


# -- in-memory -------------------------------------------------------------

_MEMORY: dict[str, dict[str, Any]] = {}
_MEMORY_COMMITS: dict[str, list[tuple[int, int]]] = {}
_MEMORY_LOCK = threading.Lock()


class _MemoryBacking:
    def __init__(self, name: str) -> None:
        with _MEMORY_LOCK:
            self.data = _MEMORY.setdefault(name, {})
            self.log = _MEMORY_COMMITS.setdefault(name, [])
        self._staged: dict[str, Any] = {}

    def multi_get(self, keys: Sequence[str]) -> list[Any]:
        return [self.data.get(k) for k in keys]

    def multi_put(self, items: Mapping[str, Any]) -> None:
        self._staged.update(items)

    def begin(self, txid: int) -> None:
        self._staged = {}

    def commit(self, txid: int, task: int) -> None:
        self.data.update(self._staged)
        self.log.append((task, txid))
        self._staged = {}

    def rollback(self) -> None:
        self._staged = {}

    def commits(self) -> list[tuple[int, int]]:
        return list(self.log)

    def close(self) -> None:
        pass


class MemoryState(StateFactory):
    """In-memory state of one process (unit tests, storm.testing); `name`
    selects a process-global map, so reset it with `MemoryState.clear()`."""

    def __init__(self, name: str, kind: str = "transactional", cache_size: int = 10_000) -> None:
        self.name = name
        self.kind = _check_kind(kind)
        self.cache_size = cache_size

    def backing(self) -> Backing:
        return _MemoryBacking(self.name)

    def read_all(self) -> dict[str, Any]:
        return {k: current_value(self.kind, v) for k, v in _MEMORY.get(self.name, {}).items()}

    @staticmethod
    def clear() -> None:
        with _MEMORY_LOCK:
            _MEMORY.clear()
            _MEMORY_COMMITS.clear()


# -- SQLite ----------------------------------------------------------------


class _SQLiteBacking:
    def __init__(self, path: str, table: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.table = table
        self.db = open_shared(path, [
            f'CREATE TABLE IF NOT EXISTS "{table}" (k TEXT PRIMARY KEY, v TEXT NOT NULL)',
            f'CREATE TABLE IF NOT EXISTS "{table}__commits" '
            "(seq INTEGER PRIMARY KEY AUTOINCREMENT, task INTEGER, txid INTEGER)",
        ])

    def multi_get(self, keys: Sequence[str]) -> list[Any]:
        found: dict[str, Any] = {}
        for i in range(0, len(keys), 500):
            chunk = list(keys[i:i + 500])
            marks = ",".join("?" * len(chunk))
            for k, v in self.db.execute(f'SELECT k, v FROM "{self.table}" WHERE k IN ({marks})', chunk):
                found[k] = json.loads(v)
        return [found.get(k) for k in keys]

    def multi_put(self, items: Mapping[str, Any]) -> None:
        self.db.executemany(
            f'INSERT OR REPLACE INTO "{self.table}" (k, v) VALUES (?, ?)',
            [(k, json.dumps(v)) for k, v in items.items()],
        )

    def begin(self, txid: int) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self, txid: int, task: int) -> None:
        self.db.execute(f'INSERT INTO "{self.table}__commits" (task, txid) VALUES (?, ?)', (task, txid))
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def commits(self) -> list[tuple[int, int]]:
        return [(int(t), int(x)) for t, x in
                self.db.execute(f'SELECT task, txid FROM "{self.table}__commits" ORDER BY seq')]

    def all(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.db.execute(f'SELECT k, v FROM "{self.table}"')}

    def close(self) -> None:
        self.db.close()


class SQLiteState(StateFactory):
    """Durable state in a SQLite file (the embedded default): one table per
    state, one transaction per batch commit. Every task of the persisting
    component opens the same file (WAL mode); their keys are disjoint."""

    def __init__(self, path: str | os.PathLike[str], table: str = "state", kind: str = "transactional",
                 cache_size: int = 10_000) -> None:
        self.path = os.fspath(path)
        if not table.replace("_", "").isalnum():
            raise StormError(f"SQLiteState table {table!r}: use letters, digits and '_' only")
        self.table = table
        self.kind = _check_kind(kind)
        self.cache_size = cache_size

    def backing(self) -> Backing:
        return _SQLiteBacking(self.path, self.table)

    def read_all(self) -> dict[str, Any]:
        b = _SQLiteBacking(self.path, self.table)
        try:
            return {k: current_value(self.kind, v) for k, v in b.all().items()}
        finally:
            b.close()
