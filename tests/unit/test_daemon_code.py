"""Packing a topology's code: the file and the modules it imports from beside
it (not storm, not installed packages), deterministic bytes and hash, safe
unpacking; rebuilding a spec with rebalanced parallelism."""

from __future__ import annotations

import io
import tarfile
import textwrap
from pathlib import Path

import pytest

from storm import StormError
from storm.daemon._code import build_spec, package_target, resolve_target, unpack, with_parallelism

HELPER = """
from storm import Bolt, Spout

class Numbers(Spout):
    outputs = ["n"]
    def next_tuple(self):
        pass

class Sink(Bolt):
    def execute(self, tup):
        self.ack(tup)
"""

TOPOLOGY = """
import json  # stdlib: not packed
import msgpack  # installed: not packed

from helpers_{tag} import Numbers, Sink
from storm import Topology

class Pipe(Topology):
    source = Numbers.spec(par=2)
    sink = Sink.spec(inputs=[source], par=1)
"""


def make_project(tmp_path: Path, tag: str) -> Path:
    (tmp_path / f"helpers_{tag}.py").write_text(HELPER)
    (tmp_path / "unrelated.py").write_text("x = 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "other.py").write_text("y = 2\n")
    topo = tmp_path / "pipe.py"
    topo.write_text(TOPOLOGY.format(tag=tag))
    return topo


def members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def test_packs_the_file_and_its_siblings_only(tmp_path: Path) -> None:
    topo = make_project(tmp_path, "a1")
    pkg, spec = package_target(f"{topo}:Pipe")
    assert spec.name == "Pipe"
    assert sorted(members(pkg.archive)) == ["helpers_a1.py", "pipe.py"]
    assert pkg.target == "pipe.py:Pipe"
    assert pkg.files == ("helpers_a1.py", "pipe.py")


def test_the_archive_is_deterministic(tmp_path: Path) -> None:
    topo = make_project(tmp_path, "a2")
    first, _ = package_target(str(topo))
    topo.touch()
    second, _ = package_target(str(topo))
    assert first.archive == second.archive and first.sha256 == second.sha256


def test_unpack_and_rebuild_in_another_place(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    topo = make_project(tmp_path / "src", "a3")
    pkg, spec = package_target(str(topo))
    dest = unpack(pkg.archive, pkg.sha256, tmp_path / "code" / pkg.sha256)
    assert (dest / "pipe.py").exists()
    assert unpack(pkg.archive, pkg.sha256, dest) == dest  # already there
    target = resolve_target(dest, pkg.target)
    assert target == f"{dest / 'pipe.py'}"
    with pytest.raises(StormError, match="sha256"):
        unpack(pkg.archive, "0" * 64, tmp_path / "other")


def test_unsafe_archive_entries_are_refused(tmp_path: Path) -> None:
    import gzip
    import hashlib

    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        info = tarfile.TarInfo("../evil.py")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    data = buf.getvalue()
    with pytest.raises(StormError, match="unsafe"):
        unpack(data, hashlib.sha256(data).hexdigest(), tmp_path / "dest")
    assert not (tmp_path / "evil.py").exists()


def test_module_targets_keep_their_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg_dir = tmp_path / "mytopos_b1"
    pkg_dir.mkdir()
    (pkg_dir / "__init__.py").write_text("")
    (pkg_dir / "parts.py").write_text(HELPER)
    (pkg_dir / "topo.py").write_text(textwrap.dedent("""
        from mytopos_b1.parts import Numbers, Sink
        from storm import Topology

        class Pipe(Topology):
            source = Numbers.spec()
            sink = Sink.spec(inputs=[source])
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    pkg, _ = package_target("mytopos_b1.topo:Pipe")
    assert pkg.target == "mytopos_b1.topo:Pipe"
    assert sorted(members(pkg.archive)) == ["mytopos_b1/__init__.py", "mytopos_b1/parts.py", "mytopos_b1/topo.py"]


def test_with_parallelism_renumbers_like_a_fresh_build(tmp_path: Path) -> None:
    topo = make_project(tmp_path, "a4")
    base = build_spec(str(topo), {"topology.workers": 2})
    assert [base.components[c].par for c in ("sink", "source")] == [1, 2]
    spec = with_parallelism(base, {"sink": 3})
    assert spec.components["sink"].tasks == [1, 2, 3]
    assert spec.components["source"].tasks == [4, 5]
    assert spec.components["__acker"].tasks == [6, 7]
    assert base.components["sink"].tasks == [1]  # the original is untouched
    again = build_spec(str(topo), {"topology.workers": 2}, {"sink": 3})
    from storm._target import fingerprint

    assert fingerprint(again) == fingerprint(spec)
    with pytest.raises(StormError, match="no component 'nope'"):
        with_parallelism(base, {"nope": 2})
    with pytest.raises(StormError, match="no component '__acker'"):
        with_parallelism(base, {"__acker": 2})
    with pytest.raises(StormError, match="parallelism must be an integer >= 1"):
        with_parallelism(base, {"sink": 0})
