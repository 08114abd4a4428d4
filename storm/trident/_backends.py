"""Trident state backends on real servers: Redis (one hash per state, each
batch commit one MULTI/EXEC) and PostgreSQL (one table per state, each batch
commit one SQL transaction). Client libraries (`redis`, `psycopg`) are imported
when a state is opened, so the rest of storm does not need them."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .._errors import StormError
from ._state import Backing, StateFactory, _check_kind, current_value

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _client_missing(package: str, exc: ImportError) -> StormError:
    return StormError(f"this state needs the '{package}' package: pip install {package} ({exc})")


class _RedisBacking:
    def __init__(self, url: str, name: str) -> None:
        try:
            import redis
        except ImportError as exc:
            raise _client_missing("redis", exc) from exc
        self.r: Any = redis.Redis.from_url(url)
        self.key = name
        self.log_key = f"{name}:commits"
        self._staged: dict[str, str] = {}

    def multi_get(self, keys: Sequence[str]) -> list[Any]:
        if not keys:
            return []
        raw = self.r.hmget(self.key, list(keys))
        return [json.loads(v) if v is not None else None for v in raw]

    def multi_put(self, items: Mapping[str, Any]) -> None:
        self._staged.update({k: json.dumps(v) for k, v in items.items()})

    def begin(self, txid: int) -> None:
        self._staged = {}

    def commit(self, txid: int, task: int) -> None:
        pipe = self.r.pipeline(transaction=True)  # MULTI ... EXEC: all or nothing
        if self._staged:
            pipe.hset(self.key, mapping=self._staged)
        pipe.rpush(self.log_key, f"{task}:{txid}")
        pipe.execute()
        self._staged = {}

    def rollback(self) -> None:
        self._staged = {}

    def commits(self) -> list[tuple[int, int]]:
        out = []
        for item in self.r.lrange(self.log_key, 0, -1):
            task, txid = item.decode().split(":")
            out.append((int(task), int(txid)))
        return out

    def all(self) -> dict[str, Any]:
        return {k.decode(): json.loads(v) for k, v in self.r.hgetall(self.key).items()}

    def close(self) -> None:
        self.r.close()


class RedisState(StateFactory):
    """State in a Redis hash named `name` (commit log in the list `<name>:commits`).
    `url` as redis-py takes it: ``redis://127.0.0.1:6379/0``."""

    def __init__(self, url: str, name: str = "trident-state", kind: str = "transactional",
                 cache_size: int = 10_000) -> None:
        self.url = url
        self.name = name
        self.kind = _check_kind(kind)
        self.cache_size = cache_size

    def backing(self) -> Backing:
        return _RedisBacking(self.url, self.name)

    def read_all(self) -> dict[str, Any]:
        b = _RedisBacking(self.url, self.name)
        try:
            return {k: current_value(self.kind, v) for k, v in b.all().items()}
        finally:
            b.close()


class _PostgresBacking:
    def __init__(self, dsn: str, table: str) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise _client_missing("psycopg", exc) from exc
        self.conn: Any = psycopg.connect(dsn)
        self.table = table
        with self.conn.cursor() as cur:
            # Two tasks may create the tables at once: serialise on a lock.
            cur.execute("SELECT pg_advisory_xact_lock(7431)")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {table} (k TEXT PRIMARY KEY, v JSONB NOT NULL)")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {table}__commits "
                        "(seq BIGSERIAL PRIMARY KEY, task INTEGER, txid BIGINT)")
        self.conn.commit()

    def multi_get(self, keys: Sequence[str]) -> list[Any]:
        if not keys:
            return []
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT k, v FROM {self.table} WHERE k = ANY(%s)", (list(keys),))
            found: dict[str, Any] = dict(cur.fetchall())
        return [found.get(k) for k in keys]

    def multi_put(self, items: Mapping[str, Any]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {self.table} (k, v) VALUES (%s, %s::jsonb) "
                "ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
                [(k, json.dumps(v)) for k, v in items.items()],
            )

    def begin(self, txid: int) -> None:
        pass  # psycopg opens a transaction with the first statement

    def commit(self, txid: int, task: int) -> None:
        with self.conn.cursor() as cur:
            cur.execute(f"INSERT INTO {self.table}__commits (task, txid) VALUES (%s, %s)", (task, txid))
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()

    def commits(self) -> list[tuple[int, int]]:
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT task, txid FROM {self.table}__commits ORDER BY seq")
            rows = [(int(t), int(x)) for t, x in cur.fetchall()]
        self.conn.rollback()
        return rows

    def all(self) -> dict[str, Any]:
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT k, v FROM {self.table}")
            rows: dict[str, Any] = dict(cur.fetchall())
        self.conn.rollback()
        return rows

    def close(self) -> None:
        self.conn.close()


class PostgresState(StateFactory):
    """State in a PostgreSQL table (commit log in `<table>__commits`); `dsn`
    as libpq takes it: ``postgresql://user@127.0.0.1:5432/db``."""

    def __init__(self, dsn: str, table: str = "trident_state", kind: str = "transactional",
                 cache_size: int = 10_000) -> None:
        if not _IDENT.match(table):
            raise StormError(f"PostgresState table {table!r}: use letters, digits and '_' only")
        self.dsn = dsn
        self.table = table
        self.kind = _check_kind(kind)
        self.cache_size = cache_size

    def backing(self) -> Backing:
        return _PostgresBacking(self.dsn, self.table)

    def read_all(self) -> dict[str, Any]:
        b = _PostgresBacking(self.dsn, self.table)
        try:
            return {k: current_value(self.kind, v) for k, v in b.all().items()}
        finally:
            b.close()
