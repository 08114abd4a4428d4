"""The SQLite cluster state store: the tree contract every backend keeps (the
ZooKeeper one is checked against a real server in the integration tests),
chunked blobs, several connections (processes) on one file, path checks."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from storm.daemon._state import SqliteState, check_path, open_state


@pytest.fixture
def state(tmp_path: Path) -> SqliteState:
    s = SqliteState(tmp_path / "state.sqlite")
    yield s  # type: ignore[misc]
    s.close()


def test_put_get_children_delete(state: SqliteState) -> None:
    assert state.get("/a") is None
    assert state.children("/") == []
    state.put("/a/b/c", b"1")
    state.put("/a/d", b"2")
    assert state.get("/a/b/c") == b"1"
    assert state.children("/") == ["a"]
    assert state.children("/a") == ["b", "d"]
    assert state.get("/a/b") == b""  # parents exist while they have children
    state.put("/a/d", b"3")
    assert state.get("/a/d") == b"3"
    state.delete("/a/b")
    assert state.get("/a/b/c") is None
    assert state.children("/a") == ["d"]
    state.delete("/missing")
    state.delete("/a")
    assert state.children("/") == []


def test_delete_does_not_touch_siblings_sharing_a_prefix(state: SqliteState) -> None:
    state.put("/t/ab", b"x")
    state.put("/t/abc/d", b"y")
    state.delete("/t/ab")
    assert state.get("/t/abc/d") == b"y"


def test_objects_and_blobs(state: SqliteState) -> None:
    state.put_obj("/o", {"k": [1, "two", None], "n": 3.5, "b": b"\x00"})
    assert state.get_obj("/o") == {"k": [1, "two", None], "n": 3.5, "b": b"\x00"}
    state.put("/junk", b"\xc1")  # not msgpack
    assert state.get_obj("/junk") is None
    blob = bytes(range(256)) * 3000  # 768 000 bytes: three chunks
    state.put_blob("/code/x", blob)
    assert state.get_blob("/code/x") == blob
    assert len(state.children("/code/x")) == 4  # 3 chunks and the size header
    state.put_blob("/code/empty", b"")
    assert state.get_blob("/code/empty") == b""
    assert state.get_blob("/code/none") is None


def _writer(path: str, worker: int) -> None:
    s = SqliteState(path)
    for i in range(50):
        s.put_obj(f"/w/{worker}-{i}", {"i": i})
    s.close()


def test_several_processes_share_one_file(tmp_path: Path) -> None:
    path = str(tmp_path / "state.sqlite")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    s = SqliteState(path)
    assert len(s.children("/w")) == 150
    s.close()


@pytest.mark.parametrize("bad", ["", "/", "a/b", "/a/", "/a//b", "/a b", "/a/../b"])
def test_bad_paths_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        check_path(bad)


def test_open_state_picks_sqlite_by_default(tmp_path: Path) -> None:
    s = open_state({"storm.local.dir": str(tmp_path)})
    assert s.describe() == f"sqlite:{tmp_path / 'cluster-state.sqlite'}"
    s.close()
    s = open_state({"storm.cluster.state.sqlite": str(tmp_path / "x.db")})
    assert s.describe().endswith("x.db")
    s.close()
