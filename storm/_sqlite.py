"""Opening a SQLite file that several processes open at once (Trident states
and batch metadata, stateful bolts' stores): WAL mode and the schema, retried
while another process holds the lock.

A busy timeout is not enough here: SQLite does not call the busy handler for
every lock it takes while a file changes journal mode or its schema, so two
workers (or a test polling the file) opening it at the same moment could fail
with "database is locked" and kill a worker at start."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

__all__ = ["open_shared"]


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def open_shared(path: str, schema: Sequence[str], timeout: float = 60.0) -> sqlite3.Connection:
    """A connection in autocommit mode to `path` in WAL mode with `schema`
    (CREATE ... IF NOT EXISTS statements) applied; each setup statement is
    retried while the file is locked, for up to `timeout` seconds."""
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    deadline = time.monotonic() + timeout
    delay = 0.005
    for statement in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", *schema):
        while True:
            try:
                db.execute(statement)
                break
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() >= deadline:
                    db.close()
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
    return db
