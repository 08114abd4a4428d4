"""Stateful bolts (storm.stateful): a key-value state per bolt task, saved in a
topology-wide consistent checkpoint and restored after a restart (SQLite by
default, Redis with ``topology.state.provider: redis``).

A `CheckpointSpout` drives checkpoints (Apache Storm's state checkpointing):

- ``initstate(T)`` when the spout starts: every stateful task resets to its last
  committed state (txid ``T``) and fails the inputs it holds, so they replay;
- ``prepare(N)`` every ``topology.state.checkpoint.interval.ms``: each task
  stages its changes for ``N`` durably (they are not the committed state yet);
- ``commit(N)`` once the prepare's tuple tree was acked by every stateful task:
  each task makes ``N`` its committed state and acks the inputs it holds for it;
- ``rollback`` when a prepare failed or timed out (``topology.state.checkpoint.timeout.secs``):
  staged changes are dropped, every task reloads its committed state and fails
  its held inputs, which the spouts replay.

The spout keeps its txid and phase in its own store, so a restarted spout resumes
(re-sends the commit it was in, rolls back the prepare it was in, then initstate).

Checkpoint tuples are barriers: a stateful bolt below other stateful bolts gets
them forwarded from every upstream task, and acts only when it has the barrier
from all of them, holding the tuples of inputs whose barrier already came. Bolts
lying between stateful bolts are wrapped at build time to forward barriers the
same way (`wire_topology`); other bolts are untouched. So the states saved under
one txid are one consistent cut of the whole topology.

Example::

    class Counter(StatefulBolt):
        outputs = ["word", "count"]
        def execute(self, tup):
            n = self.state.get(tup[0], 0) + 1
            self.state[tup[0]] = n
            self.emit([tup[0], n], anchors=[tup])
            self.ack(tup)          # held until the checkpoint holding it commits

    class Counts(Topology):
        checkpoint = CheckpointSpout.spec()
        words = WordSpout.spec()
        count = Counter.spec(inputs={words: Grouping.fields("word")}, checkpoints=checkpoint)
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import msgpack

from ._component import BasicBolt, Bolt, ComponentSpec, Spout, Stream
from ._context import TopologyContext
from ._errors import ConfigError, TopologyError
from ._grouping import Grouping
from ._sqlite import open_shared
from ._tuple import Tuple

if TYPE_CHECKING:
    from ._topology import ComponentDef, TopologySpec

__all__ = [
    "CHECKPOINT_STREAM",
    "COMMIT",
    "FORWARD_STREAM",
    "INITSTATE",
    "PREPARE",
    "ROLLBACK",
    "CheckpointSpout",
    "KeyValueState",
    "RedisStateStore",
    "SqliteStateStore",
    "StatefulBolt",
]

log = logging.getLogger("storm.stateful")

#: The checkpoint spout's stream (values: txid, action, seq).
CHECKPOINT_STREAM = "checkpoint"
#: The stream on which stateful bolts (and the bolts between them) forward barriers;
#: declared and subscribed at build time, direct grouping.
FORWARD_STREAM = "__checkpoint"
BARRIER_FIELDS = ("txid", "action", "seq")

INITSTATE = "initstate"
PREPARE = "prepare"
COMMIT = "commit"
ROLLBACK = "rollback"

INTERVAL_KEY = "topology.state.checkpoint.interval.ms"
DIR_KEY = "topology.state.dir"
#: "sqlite" (default) or "redis".
PROVIDER_KEY = "topology.state.provider"
#: The Redis URL of the redis provider, e.g. redis://127.0.0.1:6379/0.
REDIS_URL_KEY = "topology.state.redis.url"
#: Seconds the checkpoint spout waits for a phase's tuple tree before it treats it
#: as failed (default: half of topology.message.timeout.secs).
TIMEOUT_KEY = "topology.state.checkpoint.timeout.secs"
#: Set by `storm upgrade --rebalance`, not by users: {component: [the task id in each of its
#: tasks' store names, by task index]}, so a layout change that renumbers task ids keeps each
#: task's state.
STORE_TASKS_KEY = "topology.state.tasks"

# The spout's phases (stored as text in its meta table).
COMMITTED = "committed"
PREPARING = "preparing"
COMMITTING = "committing"

_DELETED = object()


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _unpack_key(data: bytes) -> Any:
    # Keys come back hashable: a tuple key is stored as an array and read as a tuple.
    return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=False)


# -- stores ------------------------------------------------------------------------


class SqliteStateStore:
    """One task's state in a SQLite file: the committed rows ``kv`` (key, value)
    and their txid, plus the rows staged by a prepare (``staged``, value NULL
    for a deletion) and the staged txid. prepare, commit and rollback are each
    one transaction, so a crash leaves either the old or the new version."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = open_shared(str(self.path), [
            "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL)",
            "CREATE TABLE IF NOT EXISTS staged (k BLOB PRIMARY KEY, v BLOB)",
            "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value)",
        ])

    def _meta(self, name: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def load(self) -> tuple[dict[Any, Any], int]:
        """The committed rows and their txid (0: nothing committed yet)."""
        data = {_unpack_key(k): _unpack(v) for k, v in self.db.execute("SELECT k, v FROM kv")}
        txid = self._meta("txid")
        return data, int(txid) if txid is not None else 0

    def staged_txid(self) -> int | None:
        v = self._meta("staged_txid")
        return int(v) if v is not None else None

    def prepare(self, txid: int, changed: Mapping[Any, Any], deleted: Sequence[Any]) -> None:
        """Stage ``changed``/``deleted`` for ``txid`` (replacing anything staged)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM staged")
            rows: list[tuple[bytes, bytes | None]] = [(_pack(k), _pack(v)) for k, v in changed.items()]
            rows += [(_pack(k), None) for k in deleted]
            if rows:
                db.executemany("INSERT OR REPLACE INTO staged (k, v) VALUES (?, ?)", rows)
            db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('staged_txid', ?)", (txid,))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def commit(self, txid: int, changed: Mapping[Any, Any] | None = None,
               deleted: Sequence[Any] | None = None) -> bool:
        """Make the rows staged for ``txid`` the committed state. True if ``txid``
        is committed now (or was already); False if nothing is staged for it.
        With ``changed``/``deleted`` (the one-step form) they are staged first."""
        if changed is not None or deleted is not None:
            self.prepare(txid, changed or {}, deleted or ())
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            staged = self._meta("staged_txid")
            if staged is None or int(staged) != txid:
                done = self._meta("txid")
                db.execute("ROLLBACK")
                return done is not None and int(done) >= txid
            db.execute("DELETE FROM kv WHERE k IN (SELECT k FROM staged WHERE v IS NULL)")
            db.execute("INSERT OR REPLACE INTO kv (k, v) SELECT k, v FROM staged WHERE v IS NOT NULL")
            db.execute("DELETE FROM staged")
            db.execute("DELETE FROM meta WHERE name = 'staged_txid'")
            db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('txid', ?)", (txid,))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return True

    def rollback(self) -> None:
        """Drop the staged rows."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM staged")
        db.execute("DELETE FROM meta WHERE name = 'staged_txid'")
        db.execute("COMMIT")

    def get_meta(self) -> dict[str, Any]:
        return {str(n): v for n, v in self.db.execute("SELECT name, value FROM meta")}

    def set_meta(self, values: Mapping[str, Any]) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", list(values.items()))
        db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


_REDIS_COMMIT = """
local st = redis.call('HGET', KEYS[3], 'staged_txid')
if (not st) or tonumber(st) ~= tonumber(ARGV[1]) then
  local done = redis.call('HGET', KEYS[3], 'txid')
  if done and tonumber(done) >= tonumber(ARGV[1]) then return 1 end
  return 0
end
local rows = redis.call('HGETALL', KEYS[2])
for i = 1, #rows, 2 do
  if rows[i + 1] == '' then
    redis.call('HDEL', KEYS[1], rows[i])
  else
    redis.call('HSET', KEYS[1], rows[i], rows[i + 1])
  end
end
redis.call('DEL', KEYS[2])
redis.call('HDEL', KEYS[3], 'staged_txid')
redis.call('HSET', KEYS[3], 'txid', ARGV[1])
return 1
"""


class RedisStateStore:
    """The same store in Redis: hashes ``<prefix>:kv`` (committed), ``<prefix>:staged``
    (an empty value marks a deletion) and ``<prefix>:meta``. A prepare is one
    MULTI/EXEC; a commit is one Lua script, so it is applied entirely or not at all."""

    def __init__(self, url: str, prefix: str) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - redis is a dependency
            raise ConfigError(f"topology.state.provider redis needs the 'redis' package: pip install redis ({exc})") from exc
        self.r: Any = redis.Redis.from_url(url)
        self.prefix = prefix
        self.kv, self.staged, self.meta = f"{prefix}:kv", f"{prefix}:staged", f"{prefix}:meta"
        self._commit = self.r.register_script(_REDIS_COMMIT)

    def load(self) -> tuple[dict[Any, Any], int]:
        data = {_unpack_key(k): _unpack(v) for k, v in self.r.hgetall(self.kv).items()}
        txid = self.r.hget(self.meta, "txid")
        return data, int(txid) if txid is not None else 0

    def staged_txid(self) -> int | None:
        v = self.r.hget(self.meta, "staged_txid")
        return int(v) if v is not None else None

    def prepare(self, txid: int, changed: Mapping[Any, Any], deleted: Sequence[Any]) -> None:
        rows: dict[bytes, bytes] = {_pack(k): _pack(v) for k, v in changed.items()}
        rows.update({_pack(k): b"" for k in deleted})
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.staged)
        if rows:
            pipe.hset(self.staged, mapping=rows)
        pipe.hset(self.meta, "staged_txid", txid)
        pipe.execute()

    def commit(self, txid: int, changed: Mapping[Any, Any] | None = None,
               deleted: Sequence[Any] | None = None) -> bool:
        if changed is not None or deleted is not None:
            self.prepare(txid, changed or {}, deleted or ())
        return bool(self._commit(keys=[self.kv, self.staged, self.meta], args=[txid]))

    def rollback(self) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.staged)
        pipe.hdel(self.meta, "staged_txid")
        pipe.execute()

    def get_meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in self.r.hgetall(self.meta).items():
            s = v.decode()
            try:
                out[k.decode()] = int(s)
            except ValueError:
                out[k.decode()] = s
        return out

    def set_meta(self, values: Mapping[str, Any]) -> None:
        self.r.hset(self.meta, mapping=dict(values))

    def close(self) -> None:
        self.r.close()


StateStore = SqliteStateStore | RedisStateStore


def open_store(conf: Mapping[str, Any], topology: str, name: str) -> StateStore:
    """The store named ``name`` of ``topology`` for the configured provider."""
    provider = str(conf.get(PROVIDER_KEY) or "sqlite").lower()
    if provider == "sqlite":
        base = conf.get(DIR_KEY) or os.path.join(str(conf.get("storm.local.dir") or "."), "storm-state")
        return SqliteStateStore(Path(str(base)) / topology / f"{name}.sqlite")
    if provider == "redis":
        url = conf.get(REDIS_URL_KEY)
        if not url:
            raise ConfigError(f"{PROVIDER_KEY} is redis: set {REDIS_URL_KEY} (e.g. redis://127.0.0.1:6379/0)")
        return RedisStateStore(str(url), f"storm-state:{topology}:{name}")
    raise ConfigError(f"{PROVIDER_KEY} must be 'sqlite' or 'redis', got {provider!r}")


def store_name(conf: Mapping[str, Any], context: TopologyContext) -> str:
    """``<component>-<task id>`` of a task's store: the task id it had when its
    state was first saved (STORE_TASKS_KEY), else its own. Tasks beyond that
    map (a parallelism raised later) take ids the map does not hold."""
    ids = [int(t) for t in (conf.get(STORE_TASKS_KEY) or {}).get(context.component_id) or []]
    if not ids:
        return f"{context.component_id}-{context.task_id}"
    index = context.this_task_index
    if index < len(ids):
        return f"{context.component_id}-{ids[index]}"
    return f"{context.component_id}-{max(ids) + 1 + index - len(ids)}"


class KeyValueState(MutableMapping[Any, Any]):
    """A dict of msgpack-able keys and values that remembers what changed since
    the last prepare. ``txid`` is the last committed checkpoint."""

    def __init__(self, store: StateStore | None = None) -> None:
        self.store = store
        self._data: dict[Any, Any] = {}
        self._changed: dict[Any, Any] = {}
        self._staged: dict[Any, Any] = {}
        self._staged_txid: int | None = None
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
        """Keys changed since the last prepare."""
        return len(self._changed)

    def prepare(self, txid: int) -> None:
        """Stage every change not yet committed under ``txid`` (durably)."""
        staged = self._staged
        staged.update(self._changed)
        if self.store is not None:
            self.store.prepare(txid, {k: v for k, v in staged.items() if v is not _DELETED},
                               [k for k, v in staged.items() if v is _DELETED])
        self._changed.clear()
        self._staged_txid = txid

    def commit(self, txid: int) -> bool:
        """Stage every change and commit it as ``txid`` at once (the one-step form)."""
        if txid <= self.txid:
            return True
        self.prepare(txid)
        return self.commit_prepared(txid)

    def commit_prepared(self, txid: int) -> bool:
        """Commit what was staged for ``txid`` (by this object or, before a restart,
        in the store). False if nothing is staged for it and it is not committed."""
        if self.store is None:
            ok = self._staged_txid == txid or txid <= self.txid
        else:
            ok = self.store.commit(txid)
        if ok:
            self._staged.clear()
            self._staged_txid = None
            self.txid = txid
        return ok

    def rollback(self) -> None:
        """Drop staged and uncommitted changes: back to the last committed state."""
        self._changed.clear()
        self._staged.clear()
        self._staged_txid = None
        if self.store is not None:
            self.store.rollback()
            self._data, self.txid = self.store.load()
        else:
            self._data = {}


# -- build-time checks and wiring ------------------------------------------------------


def _check_timeout(conf: Mapping[str, Any], owner: str) -> None:
    interval = float(conf.get(INTERVAL_KEY, 1000.0)) / 1000.0
    timeout = float(conf.get("topology.message.timeout.secs", 30.0))
    if conf.get("topology.acker.executors") == 0:
        raise TopologyError(
            f"stateful bolt '{owner}': checkpoints complete through tuple trees, so acking must be "
            "on; do not set topology.acker.executors to 0"
        )
    if timeout <= 2 * interval:
        raise TopologyError(
            f"stateful bolt '{owner}': acks are held until a checkpoint is saved, "
            f"so topology.message.timeout.secs ({timeout:g}) must exceed twice "
            f"{INTERVAL_KEY} ({interval:g}s)"
        )


def _is_checkpoint_spout(cls: type) -> bool:
    return isinstance(cls, type) and issubclass(cls, CheckpointSpout)


def _data_graph(defs: Mapping[str, ComponentDef]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(upstream, downstream) component names over data streams (not barriers)."""
    up: dict[str, set[str]] = {n: set() for n in defs}
    down: dict[str, set[str]] = {n: set() for n in defs}
    for d in defs.values():
        for sub in d.inputs:
            if sub.stream == FORWARD_STREAM or sub.source not in defs:
                continue
            if sub.stream == CHECKPOINT_STREAM and _is_checkpoint_spout(defs[sub.source].cls):
                continue
            up[d.name].add(sub.source)
            down[sub.source].add(d.name)
    return up, down


def _closure(start: set[str], edges: Mapping[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = [m for n in start for m in edges[n]]
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(edges[n])
    return seen


def _forwarder_problem(cls: type) -> str | None:
    if issubclass(cls, BasicBolt):
        return "it is a BasicBolt (its inputs are acked when execute returns, so it cannot hold them); derive it from Bolt"
    try:
        from .windowing import WindowedBolt
        if issubclass(cls, WindowedBolt):
            return "it is a windowed bolt (its window is state a checkpoint does not save)"
    except ImportError:  # pragma: no cover
        pass
    try:
        from .multilang import ShellBolt
        if issubclass(cls, ShellBolt):
            return "it is a multi-lang bolt (its child process emits after execute returns)"
    except ImportError:  # pragma: no cover
        pass
    return None


def wire_checkpoints(defs: dict[str, ComponentDef]) -> None:
    """Build-time wiring (idempotent): every stateful bolt and every bolt on a data
    path from one stateful bolt to another carries barriers. Each such bolt
    declares ``FORWARD_STREAM`` (direct, last among its streams) if a carrier reads
    it, and subscribes to the forward stream of each carrier it reads data from.
    Non-stateful carriers get a subclass that aligns and forwards barriers."""
    from ._topology import Subscription

    for d in defs.values():
        d.inputs = [s for s in d.inputs if s.stream != FORWARD_STREAM]
        d.outputs.pop(FORWARD_STREAM, None)
        base: type | None = d.cls.__dict__.get("_storm_forwarder_of")
        if base is not None:
            d.cls = base
    stateful = {n for n, d in defs.items()
                if not d.system and isinstance(d.cls, type) and issubclass(d.cls, StatefulBolt)}
    if not stateful:
        return
    up, down = _data_graph(defs)
    below = _closure(stateful, down)
    above = _closure(stateful, up)
    forwarders = {n for n in below & above if n not in stateful}
    carriers = stateful | forwarders
    spouts: set[str] = set()
    for n in sorted(stateful):
        d = defs[n]
        if issubclass(d.cls, BasicBolt):
            raise TopologyError(f"stateful bolt '{n}' is a BasicBolt; derive it from StatefulBolt only "
                                "(it holds its acks until a checkpoint commits)")
        mine = {sub.source for sub in d.inputs if sub.source in defs and _is_checkpoint_spout(defs[sub.source].cls)}
        spouts |= mine
        if not mine:
            raise TopologyError(f"stateful bolt '{n}' does not read a CheckpointSpout; "
                                "declare it with spec(..., checkpoints=<the CheckpointSpout spec>)")
    if len(spouts) > 1:
        raise TopologyError(f"stateful bolts follow different checkpoint spouts {sorted(spouts)}; "
                            "use one CheckpointSpout per topology")
    for n in sorted(forwarders):
        problem = _forwarder_problem(defs[n].cls)
        if problem:
            ups = sorted(s for s in stateful if n in _closure({s}, down))
            downs = sorted(s for s in stateful if s in _closure({n}, down))
            raise TopologyError(
                f"bolt '{n}' lies between stateful bolts {ups} and {downs}, so it must forward "
                f"checkpoint barriers, but {problem}"
            )
    inner = {n: down[n] & carriers for n in defs}
    looped = sorted(n for n in carriers if n in _closure({n}, inner))
    if looped:
        raise TopologyError(f"bolts {looped} carry checkpoint barriers and form a cycle; "
                            "checkpoint barriers need an acyclic topology")
    # ordered: a barrier keeps its place among the data the task sends (Stream.ordered).
    fields_stream = Stream(BARRIER_FIELDS, name=FORWARD_STREAM, direct=True, ordered=True)
    for n in sorted(carriers):
        d = defs[n]
        for src in sorted(up[n] & carriers):
            d.inputs.append(Subscription(src, FORWARD_STREAM, n, Grouping.direct()))
            if FORWARD_STREAM not in defs[src].outputs:
                defs[src].outputs[FORWARD_STREAM] = fields_stream
        if n in forwarders:
            d.cls = _forwarder_class(d.cls)


_FORWARDERS: dict[type, type] = {}


def _forwarder_class(cls: type) -> type:
    """A subclass of bolt class ``cls`` that aligns and forwards barriers (one per class)."""
    made = _FORWARDERS.get(cls)
    if made is None:
        made = _FORWARDERS[cls] = _make_forwarder(cls)
    return made


def _make_forwarder(cls: type) -> type:
    base_prepare = cls.prepare  # type: ignore[attr-defined]
    base_execute = cls.execute  # type: ignore[attr-defined]

    def prepare(self: Any, conf: dict[str, Any], context: TopologyContext) -> None:
        base_prepare(self, conf, context)
        self._ckpt = _Aligner(self, conf, context, None)

    def execute(self: Any, tup: Tuple) -> None:
        al = self._ckpt
        if tup is al.passing:
            base_execute(self, tup)
        elif al.busy or tup.meta.sid in al.sids:
            al.receive(tup)
        else:
            al.passing = tup
            base_execute(self, tup)

    return type(cls.__name__, (cls,), {
        "prepare": prepare, "execute": execute, "__module__": cls.__module__,
        "__qualname__": cls.__qualname__, "_storm_forwarder_of": cls,
        "__doc__": cls.__doc__,
    })


# -- barrier alignment ----------------------------------------------------------------


class _Aligner:
    """Barrier alignment of one task. Barriers come from the checkpoint spout and
    from the carriers this task reads; each carries a ``seq`` that grows with every
    action of the spout. A barrier acts once it came from every barrier source;
    meanwhile the data of sources whose barrier came is held (``buffers``). A newer
    barrier abandons an alignment that cannot finish (a source died)."""

    def __init__(self, bolt: Any, conf: Mapping[str, Any], context: TopologyContext,
                 owner: StatefulBolt | None) -> None:
        spec = context._spec
        me = context.component_id
        comp = spec.components[me]
        self.bolt = bolt
        self.owner = owner
        self.sids: frozenset[int] = frozenset(
            spec.stream_ids[(s.source, s.stream)] for s in comp.inputs
            if s.stream == FORWARD_STREAM
            or (s.stream == CHECKPOINT_STREAM and _is_checkpoint_spout(spec.components[s.source].cls)))
        self.sources: frozenset[int] = frozenset(
            t for s in comp.inputs if spec.stream_ids[(s.source, s.stream)] in self.sids
            for t in spec.components[s.source].tasks)
        self.targets: list[int] = [
            t for sub in spec.subscribers.get((me, FORWARD_STREAM), []) for t in spec.components[sub.target].tasks]
        self.last: dict[int, int] = {}
        self.target = 0
        self.pending: tuple[int, str] | None = None
        self.got: list[Tuple] = []
        self.arrived: set[int] = set()
        self.blocked: set[int] = set()
        self.buffers: dict[int, deque[Tuple]] = {}
        self.hold = False  # owner not initialized: data waits in `waiting`
        self.waiting: deque[Tuple] = deque()
        self.busy = False
        self.passing: Tuple | None = None
        self._draining = False
        self.ack: Callable[[Tuple], None] = bolt.ack
        self.fail: Callable[[Tuple], None] = bolt.fail
        self.abandoned = 0

    def _update(self) -> None:
        self.busy = bool(self.blocked) or self.hold or bool(self.waiting) or bool(self.buffers)

    # -- arrivals ----------------------------------------------------------------------
    def receive(self, tup: Tuple) -> None:
        src = tup.source_task
        is_barrier = tup.meta.sid in self.sids
        if src in self.blocked or src in self.buffers:
            self.buffers.setdefault(src, deque()).append(tup)
            if is_barrier and int(tup.values[2]) > self.target and src in self.blocked:
                # The spout gave up on the barrier we wait for: stop waiting.
                self._abandon()
        elif is_barrier:
            self._barrier(src, tup)
        elif self.hold:
            self.waiting.append(tup)
        else:
            self._run(tup)
        self._drain()
        self._update()

    def _run(self, tup: Tuple) -> None:
        self.passing = tup
        try:
            type(self.bolt).execute(self.bolt, tup)
        except Exception as exc:  # a held tuple fails alone, not the tuple that released it
            self.bolt.report_error(exc)
            self.fail(tup)

    def _abandon(self) -> None:
        if self.pending is not None:
            for t in self.got:
                if t.roots:
                    self.fail(t)
            self.abandoned += 1
        self.pending = None
        self.got = []
        self.arrived = set()
        self.blocked = set()

    def _barrier(self, src: int, tup: Tuple) -> None:
        txid, action, seq = int(tup.values[0]), str(tup.values[1]), int(tup.values[2])
        last = self.last.get(src, 0)
        if seq <= last:
            # A barrier seen already (a replay) or an old one.
            if seq == self.target and self.pending is not None:
                self.got.append(tup)
            elif tup.roots:
                self.ack(tup)
            return
        self.last[src] = seq
        if seq < self.target:
            if tup.roots:
                self.fail(tup)  # an alignment already abandoned
            return
        if seq > self.target:
            self._abandon()
            self.target = seq
            self.pending = (txid, action)
        self.got.append(tup)
        self.arrived.add(src)
        if self.arrived >= self.sources:
            got, pending = self.got, self.pending
            self.pending, self.got, self.arrived, self.blocked = None, [], set(), set()
            assert pending is not None
            self._act(pending[0], pending[1], seq, got)
        else:
            self.blocked.add(src)

    def _drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            progress = True
            while progress:
                progress = False
                if not self.hold and self.waiting:
                    progress = True
                    waiting, self.waiting = self.waiting, deque()
                    for t in waiting:
                        self._run(t)
                for src in list(self.buffers):
                    q = self.buffers[src]
                    while q and src not in self.blocked:
                        t = q.popleft()
                        progress = True
                        if t.meta.sid in self.sids:
                            self._barrier(src, t)
                        elif self.hold:
                            self.waiting.append(t)
                        else:
                            self._run(t)
                    if not q:
                        del self.buffers[src]
        finally:
            self._draining = False

    # -- actions -----------------------------------------------------------------------
    def _act(self, txid: int, action: str, seq: int, got: list[Tuple]) -> None:
        ok = True
        if self.owner is not None:
            ok = self.owner._checkpoint_action(txid, action)
        if not ok:
            for t in got:
                if t.roots:
                    self.fail(t)
            return
        if self.targets:
            self.forward(txid, action, seq, got)
        for t in got:
            if t.roots:
                self.ack(t)

    def forward(self, txid: int, action: str, seq: int, anchors: list[Tuple]) -> None:
        """Send the barrier to every task reading our forward stream. The stream
        is ordered (Stream.ordered), so the barrier never overtakes the data
        emitted before it, nor is overtaken by data emitted after it."""
        emit = self.bolt.emit
        values = [txid, action, seq]
        for task in self.targets:
            emit(values, FORWARD_STREAM, anchors, task)


# -- the checkpoint spout --------------------------------------------------------------


class CheckpointSpout(Spout):
    """Drives checkpoints: emits ``[txid, action, seq]`` on the ``checkpoint``
    stream (see the module docstring for the phases) and stores its txid and
    phase in its own state store (``<component>-<task>.spout``)."""

    outputs: ClassVar[Any] = [Stream(BARRIER_FIELDS, name=CHECKPOINT_STREAM)]

    def open(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.interval = float(conf.get(INTERVAL_KEY, 1000.0)) / 1000.0
        timeout = conf.get(TIMEOUT_KEY)
        # Half the message timeout by default: a task that restarted holds its input
        # until the rollback this triggers, which should come before that input's
        # trees time out (a tree replayed while its tuple still waits is applied twice).
        self.timeout = float(timeout if timeout else (conf.get("topology.message.timeout.secs") or 30.0) / 2)
        self.store = open_store(conf, context.topology_name, f"{store_name(conf, context)}.spout")
        meta = self.store.get_meta()
        self.txid = int(meta.get("txid") or 0)
        self.phase = str(meta.get("phase") or COMMITTED)
        self.seq = max(int(meta.get("seq") or 0), time.time_ns() // 1000)
        self.recovering = True
        self.inflight: tuple[int, str, int, float] | None = None  # seq, action, txid, sent at
        self.next_at = time.monotonic()
        #: Counters (tests and logs): checkpoints committed, rollbacks, timeouts.
        self.commits = 0
        self.rollbacks = 0
        self.timeouts = 0
        self.last_committed = self.txid if self.phase == COMMITTED else self.txid - 1
        #: Checkpoints asked from outside (request): the newest request, the one the
        #: prepare in flight serves, and the newest one a committed checkpoint served.
        self.requested = 0
        self.forcing = 0
        self.served = 0
        # A request no checkpoint could serve stops forcing prepares then (a
        # failing bolt would otherwise make them back to back).
        self.request_until = 0.0

    def _save(self) -> None:
        self.store.set_meta({"txid": self.txid, "phase": self.phase, "seq": self.seq})

    def _send(self, action: str) -> None:
        self.seq += 1
        self.inflight = (self.seq, action, self.txid, time.monotonic())
        self.emit([self.txid, action, self.seq], stream=CHECKPOINT_STREAM, msg_id=self.seq)

    def next_tuple(self) -> None:
        now = time.monotonic()
        if self.inflight is not None:
            if now - self.inflight[3] < self.timeout:
                return
            self.timeouts += 1
            log.warning("checkpoint %s of txid %d timed out after %.1fs", self.inflight[1],
                        self.inflight[2], self.timeout)
            self.fail(self.inflight[0])
        if self.recovering:
            self._send({COMMITTED: INITSTATE, PREPARING: ROLLBACK, COMMITTING: COMMIT}[self.phase])
        elif self.phase == COMMITTING:
            self._send(COMMIT)
        elif self.phase == COMMITTED and (now >= self.next_at or (
                self.requested > self.served and now < self.request_until)):
            self.next_at = now + self.interval
            self.txid += 1
            self.phase = PREPARING
            self._save()
            self.forcing = self.requested
            self._send(PREPARE)

    def ack(self, msg_id: Any) -> None:
        cur = self.inflight
        if cur is None or cur[0] != msg_id:
            return  # a phase given up on already
        self.inflight = None
        action = cur[1]
        if action == PREPARE:
            self.phase = COMMITTING
        elif action == COMMIT:
            self.phase = COMMITTED
            self.commits += 1
            self.last_committed = self.txid
            self.served = max(self.served, self.forcing)
        elif action == ROLLBACK:
            self.phase = COMMITTED
            self.txid -= 1
            self.rollbacks += 1
            self.recovering = False
            self.next_at = time.monotonic() + self.interval
        elif action == INITSTATE:
            self.recovering = False
            self.next_at = time.monotonic() + self.interval
        self._save()

    def fail(self, msg_id: Any) -> None:
        cur = self.inflight
        if cur is None or cur[0] != msg_id:
            return
        self.inflight = None
        self.recovering = True
        log.info("checkpoint %s of txid %d failed; recovering", cur[1], cur[2])

    def request(self, token: int) -> None:
        """Take a checkpoint now (`storm upgrade` asks before it stops a worker):
        the next prepare starts at once, whatever the interval, and once a
        checkpoint prepared after this call commits, ``served`` is ``token``.
        Tokens grow; an older one than already asked is ignored."""
        if token > self.requested:
            self.requested = token
            self.request_until = time.monotonic() + max(60.0, 4 * self.timeout)
            log.info("checkpoint asked for (request %d)", token)

    def state_size(self) -> dict[str, int]:
        """In the worker's metrics (so in the heartbeat nimbus reads): the last
        committed txid and the newest request a committed checkpoint served."""
        return {"committed_txid": self.last_committed, "served_request": self.served}

    def close(self) -> None:
        self.store.close()


def request_checkpoint(worker: Any, token: Any) -> int:
    """Pass a checkpoint request (the worker's ``checkpoint`` control message)
    to the worker's checkpoint spouts; how many there were."""
    n = 0
    for ex in worker.spouts:
        if isinstance(ex.instance, CheckpointSpout):
            ex.instance.request(int(token))
            n += 1
    return n


# -- stateful bolts ---------------------------------------------------------------------


def _intercept(execute: Callable[[Any, Tuple], None]) -> Callable[[Any, Tuple], None]:
    @functools.wraps(execute)
    def execute_or_checkpoint(self: StatefulBolt, tup: Tuple) -> None:
        al = self._ckpt
        if tup is al.passing:
            execute(self, tup)
        elif al.busy or tup.meta.sid in al.sids:
            al.receive(tup)
        else:
            al.passing = tup
            execute(self, tup)

    execute_or_checkpoint._storm_checkpoint = True  # type: ignore[attr-defined]
    return execute_or_checkpoint


class StatefulBolt(Bolt):
    """A bolt with ``self.state``, a KeyValueState holding the last committed
    checkpoint when the task starts.

    Write ``execute`` as usual; ``ack`` calls are held and made once the
    checkpoint holding the tuple commits. Hooks: ``init_state(state)`` is called
    in prepare and again whenever the state is reset to the last committed
    checkpoint (initstate, rollback); ``pre_commit(txid)`` right before the
    state is staged for ``txid`` (put derived data into it there);
    ``pre_rollback()`` before a rollback. Declare it with
    ``spec(..., checkpoints=checkpoint_spout)``. The state lives in
    ``<topology.state.dir>/<topology>/<component>-<task>.sqlite`` (or Redis).
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

    @_intercept
    def execute(self, tup: Tuple) -> None:
        """Process one input tuple (checkpoint barriers never reach it)."""

    # -- user hooks ----------------------------------------------------------------
    def init_state(self, state: KeyValueState) -> None:
        """Called with the last committed state: in prepare, and after every reset."""

    def pre_commit(self, txid: int) -> None:
        """Called right before the state is staged (prepared) for checkpoint ``txid``."""

    def pre_rollback(self) -> None:
        """Called before the state is reset to the last committed checkpoint."""

    @classmethod
    def wire_topology(cls, defs: dict[str, ComponentDef]) -> None:
        """Build-time wiring of checkpoint barriers (see wire_checkpoints)."""
        wire_checkpoints(defs)

    @classmethod
    def validate_topology(cls, spec: TopologySpec, name: str) -> None:
        """Build-time check of this bolt in a built topology (see _check_timeout)."""
        conf = dict(spec.config)
        conf.update(spec.components[name].config)
        _check_timeout(conf, name)

    # -- runtime side ----------------------------------------------------------------
    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        """Loads the committed state; subclasses that override prepare must call super()."""
        _check_timeout(conf, context.component_id)
        self.state = KeyValueState(open_store(conf, context.topology_name, store_name(conf, context)))
        self.checkpoints = 0
        self.rollbacks = 0
        #: False until an initstate or rollback: the task may have restarted while the
        #: others kept going, so it fails prepares (forcing a rollback everywhere) and
        #: holds its input until then.
        self.initialized = False
        self._held: list[Tuple] = []
        self._prepared: list[Tuple] = []
        # The task's collector acks for real, once the checkpoint holding a tuple commits.
        self._real_ack: Callable[[Tuple], None] = self.collector.ack
        self._real_fail: Callable[[Tuple], None] = self.collector.fail
        self._ckpt = _Aligner(self, conf, context, self)
        self._ckpt.ack = self._real_ack
        self._ckpt.hold = True
        self._ckpt._update()
        self.init_state(self.state)

    def ack(self, tup: Tuple) -> None:
        """Held until the checkpoint holding `tup` commits."""
        self._held.append(tup)

    def _fail_held(self) -> None:
        fail = self._real_fail
        for t in self._prepared:
            fail(t)
        for t in self._held:
            fail(t)
        self._prepared.clear()
        self._held.clear()

    def _checkpoint_action(self, txid: int, action: str) -> bool:
        """Apply one barrier; False fails it (the spout then rolls back)."""
        state = self.state
        try:
            if action == PREPARE:
                if not self.initialized:
                    return False
                self.pre_commit(txid)
                state.prepare(txid)
                self._prepared.extend(self._held)
                self._held.clear()
            elif action == COMMIT:
                if not state.commit_prepared(txid):
                    # Only if this task's store lost what it staged (or was replaced):
                    # failing would make the spout retry this commit forever. The
                    # task stays as it is; an uninitialized one is reset by the
                    # rollback its next prepare causes.
                    log.error("%s: commit of txid %d, which this task has not staged",
                              type(self).__name__, txid)
                if self.initialized:
                    ack = self._real_ack
                    for t in self._prepared:
                        ack(t)
                    self._prepared.clear()
                    self.checkpoints += 1
            elif action in (ROLLBACK, INITSTATE):
                if self.initialized:
                    self.pre_rollback()
                state.rollback()
                self._fail_held()
                self.rollbacks += action == ROLLBACK
                self.initialized = True
                al = self._ckpt
                if al.hold:
                    al.hold = False
                    # Data that waited for the state and came from an upstream stateful
                    # bolt before this barrier is from before its reset too: fail it.
                    keep: deque[Tuple] = deque()
                    for t in al.waiting:
                        if t.source_task in al.sources:
                            self._real_fail(t)
                        else:
                            keep.append(t)
                    al.waiting = keep
                self.init_state(state)
        except Exception as exc:
            self.report_error(exc)
            return False
        return True

    def cleanup(self) -> None:
        # Not saved at shutdown: the held inputs are replayed instead, so a
        # state without them stays consistent with what the spouts know.
        store = self.state.store
        if store is not None:
            store.close()

