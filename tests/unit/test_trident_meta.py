"""Where the Trident batch metadata lives: a SQLite file by default; on the
Redis / PostgreSQL server of a topology's state when it has one (so a worker
restarted on another host resumes), unless a metadata path or
topology.trident.meta.backend=sqlite says otherwise. (The server stores
themselves run in the Redis / PostgreSQL kill tests.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from preconditions import require_module

from storm import StormError
from storm.trident import (
    Count,
    MemoryState,
    MetaStore,
    PostgresState,
    RedisState,
    SQLiteState,
    TransactionalListSpout,
    TridentTopology,
)
from storm.trident._backends import PostgresMetaStore, RedisMetaStore
from storm.trident._executor import meta_server_state, open_meta

pytestmark = pytest.mark.timeout(30)


def coordinator_meta_state(*states: object) -> object:
    t = TridentTopology("M")
    s = t.new_stream("lines", TransactionalListSpout([["a"]], ["w"]))
    for i, st in enumerate(states):
        s.group_by("w").persistent_aggregate(st, Count(), "n", name=f"s{i}")  # type: ignore[arg-type]
    spec = t.build()
    metas = {getattr(c.cls, "meta_state", None) for c in spec.components.values() if c.name.startswith(
        ("trident-coord", "lines"))}
    assert len(metas) == 1, "the coordinator and the emitters must agree on the store"
    return metas.pop()


def test_the_compiler_picks_the_server_state_for_the_metadata(tmp_path: Path) -> None:
    redis = RedisState("redis://127.0.0.1:1/0", "h")
    pg = PostgresState("postgresql://x@127.0.0.1:1/db", "t")
    assert coordinator_meta_state(SQLiteState(tmp_path / "s.sqlite"), MemoryState("m")) is None
    assert coordinator_meta_state(SQLiteState(tmp_path / "s.sqlite"), redis) is redis
    assert coordinator_meta_state(pg, redis) is pg
    assert meta_server_state([MemoryState("m"), pg]) is pg


def test_a_metadata_path_or_backend_sqlite_keeps_it_in_a_file(tmp_path: Path) -> None:
    redis = RedisState("redis://127.0.0.1:1/0", "h")
    for conf in ({"topology.trident.meta.path": str(tmp_path / "a.sqlite")},
                 {"topology.trident.meta.backend": "sqlite", "storm.local.dir": str(tmp_path),
                  "topology.name": "M"}):
        m = open_meta(dict(conf), redis)
        try:
            assert isinstance(m, MetaStore)
            m.set_committed("M", 4)
            assert m.committed("M") == 4
        finally:
            m.close()
    assert (tmp_path / "a.sqlite").exists() and (tmp_path / "trident" / "M.meta.sqlite").exists()


def test_server_metadata_stores_are_named_after_the_state() -> None:
    require_module("redis", "pip install redis (a test extra: pip install -e .[test])")
    m = open_meta({}, RedisState("redis://127.0.0.1:1/0", "wc_counts"))
    assert isinstance(m, RedisMetaStore) and m.prefix == "wc_counts:trident-meta"
    m.close()
    psycopg = require_module("psycopg", "pip install 'psycopg[binary]' (a test extra: pip install -e .[test])")
    with pytest.raises(psycopg.OperationalError):  # nothing listens on port 1
        PostgresMetaStore("postgresql://x@127.0.0.1:1/db", "t__meta")
    with pytest.raises(StormError, match="letters, digits"):
        PostgresMetaStore("postgresql://x@127.0.0.1:1/db", "bad-name")
