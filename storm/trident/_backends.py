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


# -- batch metadata on the state's server ---------------------------------------------
#
# The same operations as the SQLite MetaStore (storm.trident._spouts), kept on
# the Redis / PostgreSQL server of the topology's state, so that a worker
# restarted on another host finds the offsets of every batch in flight and the
# last committed txid.


class RedisMetaStore:
    """Batch metadata in Redis keys under `prefix`: one hash per (component,
    partition) of txid -> "start,stop", and strings for the committed txid
    and reserved attempts."""

    def __init__(self, url: str, prefix: str) -> None:
        try:
            import redis
        except ImportError as exc:
            raise _client_missing("redis", exc) from exc
        self.r: Any = redis.Redis.from_url(url)
        self.prefix = prefix

    def _batches(self, comp: str, part: int) -> str:
        return f"{self.prefix}:batches:{comp}:{part}"

    def get(self, comp: str, part: int, txid: int) -> tuple[int, int] | None:
        raw = self.r.hget(self._batches(comp, part), str(txid))
        if raw is None:
            return None
        start, stop = raw.decode().split(",")
        return int(start), int(stop)

    def put(self, comp: str, part: int, txid: int, start: int, stop: int, drop_later: bool) -> None:
        key = self._batches(comp, part)
        # One emitter task owns a partition: nobody else writes this hash meanwhile.
        later = [k for k in self.r.hkeys(key) if int(k) > txid] if drop_later else []
        pipe = self.r.pipeline(transaction=True)
        if later:
            pipe.hdel(key, *later)
        pipe.hset(key, str(txid), f"{start},{stop}")
        pipe.sadd(f"{self.prefix}:batch-keys", key)
        pipe.execute()

    def committed(self, name: str) -> int:
        raw = self.r.get(f"{self.prefix}:committed:{name}")
        return int(raw) if raw is not None else 0

    def set_committed(self, name: str, txid: int) -> None:
        self.r.set(f"{self.prefix}:committed:{name}", txid)
        if txid % 50 == 0:  # offsets of long-committed batches are never read again
            for key in self.r.smembers(f"{self.prefix}:batch-keys"):
                old = [k for k in self.r.hkeys(key) if int(k) < txid - 100]
                if old:
                    self.r.hdel(key, *old)

    def reserved_attempts(self, name: str) -> int:
        raw = self.r.get(f"{self.prefix}:attempts:{name}")
        return int(raw) if raw is not None else 0

    def reserve_attempts(self, name: str, upto: int) -> None:
        self.r.set(f"{self.prefix}:attempts:{name}", upto)

    def close(self) -> None:
        self.r.close()


class PostgresMetaStore:
    """Batch metadata in PostgreSQL tables `<prefix>_batches`,
    `<prefix>_coordinator` and `<prefix>_attempts`; each write one transaction."""

    def __init__(self, dsn: str, prefix: str) -> None:
        if not _IDENT.match(prefix):
            raise StormError(f"PostgreSQL metadata prefix {prefix!r}: use letters, digits and '_' only")
        try:
            import psycopg
        except ImportError as exc:
            raise _client_missing("psycopg", exc) from exc
        self.conn: Any = psycopg.connect(dsn)
        self.p = prefix
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(7432)")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {prefix}_batches (comp TEXT, part INTEGER, txid BIGINT, "
                        "start BIGINT, stop BIGINT, PRIMARY KEY (comp, part, txid))")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {prefix}_coordinator (name TEXT PRIMARY KEY, committed BIGINT)")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {prefix}_attempts (name TEXT PRIMARY KEY, reserved BIGINT)")
        self.conn.commit()

    def _one(self, sql: str, args: tuple[Any, ...]) -> Any:
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            row = cur.fetchone()
        self.conn.rollback()  # end the read's transaction
        return row

    def get(self, comp: str, part: int, txid: int) -> tuple[int, int] | None:
        row = self._one(f"SELECT start, stop FROM {self.p}_batches WHERE comp=%s AND part=%s AND txid=%s",
                        (comp, part, txid))
        return (int(row[0]), int(row[1])) if row else None

    def put(self, comp: str, part: int, txid: int, start: int, stop: int, drop_later: bool) -> None:
        with self.conn.cursor() as cur:
            if drop_later:
                cur.execute(f"DELETE FROM {self.p}_batches WHERE comp=%s AND part=%s AND txid>%s", (comp, part, txid))
            cur.execute(f"INSERT INTO {self.p}_batches VALUES (%s, %s, %s, %s, %s) ON CONFLICT (comp, part, txid) "
                        "DO UPDATE SET start = EXCLUDED.start, stop = EXCLUDED.stop", (comp, part, txid, start, stop))
        self.conn.commit()

    def committed(self, name: str) -> int:
        row = self._one(f"SELECT committed FROM {self.p}_coordinator WHERE name=%s", (name,))
        return int(row[0]) if row else 0

    def set_committed(self, name: str, txid: int) -> None:
        with self.conn.cursor() as cur:
            cur.execute(f"INSERT INTO {self.p}_coordinator VALUES (%s, %s) ON CONFLICT (name) "
                        "DO UPDATE SET committed = EXCLUDED.committed", (name, txid))
            cur.execute(f"DELETE FROM {self.p}_batches WHERE txid < %s", (txid - 100,))
        self.conn.commit()

    def reserved_attempts(self, name: str) -> int:
        row = self._one(f"SELECT reserved FROM {self.p}_attempts WHERE name=%s", (name,))
        return int(row[0]) if row else 0

    def reserve_attempts(self, name: str, upto: int) -> None:
        with self.conn.cursor() as cur:
            cur.execute(f"INSERT INTO {self.p}_attempts VALUES (%s, %s) ON CONFLICT (name) "
                        "DO UPDATE SET reserved = EXCLUDED.reserved", (name, upto))
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()
