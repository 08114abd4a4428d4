"""Several processes opening one fresh SQLite file at the same moment (the
workers of a topology on a Trident state or its batch metadata, a test polling
the state): none may fail with "database is locked" (it killed a worker at
start in bench/trident.py)."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any

import pytest

# Imported before the fork, so the openers reach the file together.
from storm.stateful import SqliteStateStore
from storm.trident import MetaStore
from storm.trident._state import _SQLiteBacking

OPENERS = 6
ROUNDS = 10


def _open(kind: str, path: str, start: Any, results: Any) -> None:
    start.wait()
    try:
        if kind == "state":
            _SQLiteBacking(path, "counts").db.close()
        elif kind == "meta":
            MetaStore(path).close()
        else:
            SqliteStateStore(path).db.close()
        results.put("ok")
    except Exception as exc:  # reported to the test, which fails with it
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["state", "meta", "store"])
def test_processes_opening_one_new_file_at_once_all_succeed(kind: str, tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    failures = []
    for r in range(ROUNDS):
        path = str(tmp_path / f"{kind}-{r}.sqlite")
        start, results = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_open, args=(kind, path, start, results)) for _ in range(OPENERS)]
        for p in procs:
            p.start()
        start.set()
        try:
            outcomes = [results.get(timeout=90) for _ in procs]
        finally:
            for p in procs:
                p.join(timeout=30)
                if p.is_alive():
                    p.kill()
        failures += [o for o in outcomes if o != "ok"]
    assert failures == []
