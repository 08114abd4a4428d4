"""The cluster state store: a small tree of named byte values (paths like
`/assignments/wordcount`) that nimbus, the supervisors and nothing else share.
Two backends behind one interface: `SqliteState`, one WAL-mode SQLite file that
several processes on one host open at once (the default, nothing to install),
and `ZkState`, ZooKeeper through kazoo, for a cluster that spans hosts. It owns
storage and encoding only; what the paths mean belongs to nimbus and the
supervisor (see `paths` below).

Readers poll: every value is small and a daemon reads a handful each second,
so neither backend needs watches to be correct."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgpack

from .._errors import StormError

# Segments are topology names, supervisor ids, numbers and content hashes.
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_.\-:]+$")
# ZooKeeper's default jute.maxbuffer is 1 MiB per node: code archives are split.
BLOB_CHUNK = 256 * 1024


class StateError(StormError):
    """The cluster state store cannot be reached or used."""


def check_path(path: str) -> str:
    if not path.startswith("/") or path == "/" or path.endswith("/"):
        raise ValueError(f"state path must look like /a/b, got {path!r}")
    for seg in path[1:].split("/"):
        if not _SEGMENT_RE.match(seg) or seg in (".", ".."):
            raise ValueError(f"state path {path!r}: segment {seg!r} has characters other than [A-Za-z0-9_.-:]")
    return path


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


class ClusterState(ABC):
    """A tree of byte values; a parent exists while it has children."""

    @abstractmethod
    def get(self, path: str) -> bytes | None:
        """The value at `path`, or None when there is no such node."""

    @abstractmethod
    def put(self, path: str, data: bytes) -> None:
        """Create or replace the value at `path` (missing parents are created)."""

    @abstractmethod
    def delete(self, path: str) -> None:
        """Remove `path` and everything under it; no error if it is absent."""

    @abstractmethod
    def children(self, path: str) -> list[str]:
        """Names (not paths) of the nodes directly under `path`, sorted."""

    @abstractmethod
    def describe(self) -> str:
        """Where the state lives, for logs and error messages."""

    def close(self) -> None:  # noqa: B027 - optional for backends holding nothing
        """Release connections."""

    # -- msgpack-encoded objects -----------------------------------------------
    def get_obj(self, path: str) -> Any:
        raw = self.get(path)
        if raw is None:
            return None
        try:
            return msgpack.unpackb(raw, raw=False, strict_map_key=False)
        except Exception:
            return None  # a torn or foreign value reads as absent

    def put_obj(self, path: str, obj: Any) -> None:
        self.put(path, msgpack.packb(obj, use_bin_type=True))

    def children_objs(self, path: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.children(path):
            obj = self.get_obj(f"{path}/{name}")
            if obj is not None:
                out[name] = obj
        return out

    # -- large values, in chunks --------------------------------------------------
    def put_blob(self, path: str, data: bytes) -> None:
        """Store `data` of any size: chunks first, the header last, so a reader
        that finds the header finds every chunk."""
        chunks = [data[i:i + BLOB_CHUNK] for i in range(0, len(data), BLOB_CHUNK)] or [b""]
        for i, chunk in enumerate(chunks):
            self.put(f"{path}/{i}", chunk)
        self.put_obj(f"{path}/size", {"size": len(data), "chunks": len(chunks)})

    def get_blob(self, path: str) -> bytes | None:
        head = self.get_obj(f"{path}/size")
        if not isinstance(head, dict):
            return None
        parts = []
        for i in range(int(head["chunks"])):
            chunk = self.get(f"{path}/{i}")
            if chunk is None:
                return None
            parts.append(chunk)
        data = b"".join(parts)
        return data if len(data) == head["size"] else None


class SqliteState(ClusterState):
    """The tree in one SQLite file (WAL journal, so readers never block the
    writer); every process opens its own connection."""

    def __init__(self, file: str | Path) -> None:
        self.file = Path(file)
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.file), timeout=30.0, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout = 30000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS nodes (path TEXT PRIMARY KEY, parent TEXT NOT NULL, "
                "data BLOB NOT NULL, mtime REAL NOT NULL)"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS nodes_parent ON nodes(parent)")
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot open the cluster state file {self.file}: {exc}") from exc
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"sqlite:{self.file}"

    def get(self, path: str) -> bytes | None:
        check_path(path)
        with self._lock:
            row = self._db.execute("SELECT data FROM nodes WHERE path = ?", (path,)).fetchone()
        return bytes(row[0]) if row else None

    def put(self, path: str, data: bytes) -> None:
        check_path(path)
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                p = _parent(path)
                while p != "/":
                    self._db.execute(
                        "INSERT OR IGNORE INTO nodes (path, parent, data, mtime) VALUES (?, ?, ?, ?)",
                        (p, _parent(p), b"", now),
                    )
                    p = _parent(p)
                self._db.execute(
                    "INSERT OR REPLACE INTO nodes (path, parent, data, mtime) VALUES (?, ?, ?, ?)",
                    (path, _parent(path), bytes(data), now),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def delete(self, path: str) -> None:
        check_path(path)
        prefix = path + "/"
        with self._lock:
            self._db.execute(
                "DELETE FROM nodes WHERE path = ? OR substr(path, 1, ?) = ?",
                (path, len(prefix), prefix),
            )

    def children(self, path: str) -> list[str]:
        if path != "/":
            check_path(path)
        with self._lock:
            rows = self._db.execute("SELECT path FROM nodes WHERE parent = ?", (path,)).fetchall()
        return sorted(r[0].rsplit("/", 1)[1] for r in rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class ZkState(ClusterState):
    """The tree under `root` in ZooKeeper (kazoo); operations retry across a
    connection loss, as kazoo's KazooRetry does."""

    def __init__(self, servers: list[str], port: int = 2181, root: str = "/storm",
                 session_timeout: float = 20.0, connect_timeout: float = 15.0) -> None:
        try:
            from kazoo.client import KazooClient
            from kazoo.retry import KazooRetry
        except ImportError as exc:  # pragma: no cover - kazoo is a dependency
            raise StateError("storm.zookeeper.servers is set but kazoo is not installed (pip install kazoo)") from exc
        if not root.startswith("/") or root.endswith("/"):
            raise StateError(f"storm.zookeeper.root must look like /storm, got {root!r}")
        hosts = ",".join(s if ":" in s else f"{s}:{port}" for s in servers)
        self.hosts = hosts
        self.root = root
        retry = KazooRetry(max_tries=-1, delay=0.1, max_delay=2.0, deadline=connect_timeout)
        self._zk = KazooClient(hosts=hosts, timeout=session_timeout, connection_retry=retry,
                               command_retry=KazooRetry(max_tries=5, delay=0.1, max_delay=1.0,
                                                        deadline=connect_timeout))
        try:
            self._zk.start(timeout=connect_timeout)
        except Exception as exc:
            try:
                self._zk.stop()
                self._zk.close()
            except Exception:
                pass
            raise StateError(
                f"cannot reach ZooKeeper at {hosts} within {connect_timeout:g}s ({type(exc).__name__}); "
                "check storm.zookeeper.servers and that the servers run"
            ) from exc

    def describe(self) -> str:
        return f"zookeeper:{self.hosts}{self.root}"

    @property
    def client(self) -> Any:
        """The kazoo client, for recipes (nimbus's leader election) beside the tree."""
        return self._zk

    def _full(self, path: str) -> str:
        return self.root + check_path(path)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from kazoo.exceptions import KazooException, NoNodeError

        try:
            return self._zk.retry(fn, *args, **kwargs)
        except NoNodeError:
            raise
        except KazooException as exc:
            raise StateError(f"ZooKeeper at {self.hosts}: {type(exc).__name__} {exc}") from exc

    def get(self, path: str) -> bytes | None:
        from kazoo.exceptions import NoNodeError

        try:
            data, _ = self._call(self._zk.get, self._full(path))
        except NoNodeError:
            return None
        return bytes(data)

    def put(self, path: str, data: bytes) -> None:
        from kazoo.exceptions import NodeExistsError, NoNodeError

        full = self._full(path)
        for _ in range(5):
            try:
                self._call(self._zk.set, full, bytes(data))
                return
            except NoNodeError:
                pass
            try:
                self._call(self._zk.create, full, bytes(data), makepath=True)
                return
            except NodeExistsError:
                continue  # created in between by another process: set it
        raise StateError(f"ZooKeeper at {self.hosts}: cannot write {path}")

    def delete(self, path: str) -> None:
        from kazoo.exceptions import NoNodeError, NotEmptyError

        full = self._full(path)
        for _ in range(5):
            try:
                self._call(self._zk.delete, full, recursive=True)
                return
            except NoNodeError:
                return
            except NotEmptyError:
                continue  # a child appeared while deleting: try again

    def children(self, path: str) -> list[str]:
        from kazoo.exceptions import NoNodeError

        full = self.root if path == "/" else self._full(path)
        try:
            return sorted(self._call(self._zk.get_children, full))
        except NoNodeError:
            return []

    def close(self) -> None:
        try:
            self._zk.stop()
            self._zk.close()
        except Exception:
            pass


def local_dir(conf: Mapping[str, Any]) -> Path:
    """The daemon's own directory (`storm.local.dir`; default ~/.storm/local)."""
    raw = conf.get("storm.local.dir")
    return Path(raw).expanduser() if raw else Path.home() / ".storm" / "local"


def open_state(conf: Mapping[str, Any]) -> ClusterState:
    """ZooKeeper when `storm.zookeeper.servers` is set, else the SQLite file."""
    servers = conf.get("storm.zookeeper.servers") or []
    if servers:
        if isinstance(servers, str):
            servers = [servers]
        return ZkState(
            [str(s) for s in servers],
            int(conf.get("storm.zookeeper.port") or 2181),
            str(conf.get("storm.zookeeper.root") or "/storm"),
            float(conf.get("storm.zookeeper.session.timeout") or 20000) / 1000.0,
            float(conf.get("storm.zookeeper.connection.timeout") or 15000) / 1000.0,
        )
    file = conf.get("storm.cluster.state.sqlite")
    return SqliteState(Path(file).expanduser() if file else local_dir(conf) / "cluster-state.sqlite")


class paths:  # noqa: N801 - a namespace of path builders
    """Where each kind of record lives; the one place that spells the layout."""

    NIMBUS = "/nimbus"  # the leading nimbus's record and beat
    NIMBUSES = "/nimbuses"  # every nimbus's own record, leader or follower
    SUPERVISORS = "/supervisors"
    TOPOLOGIES = "/topologies"
    ASSIGNMENTS = "/assignments"
    BEATS = "/workerbeats"
    CODE = "/code"

    @staticmethod
    def nimbus(nid: str) -> str:
        return f"/nimbuses/{nid}"

    @staticmethod
    def supervisor(sid: str) -> str:
        return f"/supervisors/{sid}"

    @staticmethod
    def topology(name: str) -> str:
        return f"/topologies/{name}"

    @staticmethod
    def assignment(name: str) -> str:
        return f"/assignments/{name}"

    @staticmethod
    def beats(name: str) -> str:
        return f"/workerbeats/{name}"

    @staticmethod
    def beat(name: str, index: int) -> str:
        return f"/workerbeats/{name}/{index}"

    @staticmethod
    def code(sha: str) -> str:
        return f"/code/{sha}"
