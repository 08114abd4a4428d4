"""Multi-lang files in a cluster code archive: what a ShellBolt/ShellSpout runs
(`script=`, a Python script's own imports, files named in `command=`/`args=`)
is packed with the topology, keeps its executable bit, and resolves inside the
unpacked copy on a supervisor's host; a script outside the topology's directory
is refused with one clear error."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from storm import StormError
from storm.daemon._code import package_target, resolve_target, unpack

pytestmark = pytest.mark.timeout(60)

TOPOLOGY = """
from storm import Topology
from storm.multilang import ShellBolt, ShellSpout

class Shells{tag}(Topology):
    numbers = ShellSpout.spec(command=["./run.sh"], script="comps/spout.js", outputs=["n"])
    square = ShellBolt.spec(command=["python3"], script="comps/bolt.py", args=["data/table.json", "-v"],
                            inputs=[numbers], outputs=["n", "sq"])
    native = ShellBolt.spec(command=["/bin/sh"], script="/bin/true", inputs=[square], outputs=["x"])
"""


def members(archive: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def make_project(root: Path, tag: str) -> Path:
    (root / "comps").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "comps" / "spout.js").write_text("// a multi-lang spout\n")
    (root / "comps" / "bolt.py").write_text(f"import helper_{tag}\nprint(helper_{tag}.X)\n")
    (root / "comps" / f"helper_{tag}.py").write_text("X = 1\n")
    (root / "comps" / "unused.py").write_text("Y = 2\n")
    (root / "data" / "table.json").write_text("{}\n")
    run = root / "run.sh"
    run.write_text("#!/bin/sh\nexec node \"$@\"\n")
    run.chmod(0o755)
    topo = root / f"shells_{tag}.py"
    topo.write_text(TOPOLOGY.format(tag=tag))
    return topo


def test_multilang_files_are_packed_and_resolve_in_the_unpacked_copy(tmp_path: Path) -> None:
    src = tmp_path / "src"
    topo = make_project(src, "m1")
    pkg, spec = package_target(str(topo))
    found = members(pkg.archive)
    assert sorted(found) == ["comps/bolt.py", "comps/helper_m1.py", "comps/spout.js", "data/table.json",
                             "run.sh", "shells_m1.py"]
    assert found["run.sh"].mode == 0o755 and found["comps/bolt.py"].mode == 0o644
    # a supervisor on another host: unpack elsewhere, with the source gone
    dest = unpack(pkg.archive, pkg.sha256, tmp_path / "code" / pkg.sha256)
    os.rename(src, tmp_path / "gone")
    assert os.access(dest / "run.sh", os.X_OK)
    probe = textwrap.dedent(f"""
        import json, sys
        from storm.daemon._code import build_spec
        from storm.multilang import _resolve
        spec = build_spec({resolve_target(dest, pkg.target)!r}, {{}})
        print(json.dumps({{c: _resolve(spec.components[c].config) for c in ("numbers", "square", "native")}}))
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, cwd=str(dest))
    assert out.returncode == 0, out.stderr
    resolved = json.loads(out.stdout.strip().splitlines()[-1])
    cmd, cwd = resolved["numbers"]
    assert cmd == ["./run.sh", str(dest / "comps" / "spout.js")] and cwd == str(dest)
    assert (Path(cwd) / cmd[0]).is_file()  # the child runs in the topology file's directory
    cmd, _ = resolved["square"]
    assert cmd[1:] == [str(dest / "comps" / "bolt.py"), "data/table.json", "-v"]
    assert Path(cmd[1]).is_file()
    assert resolved["native"][0] == ["/bin/sh", "/bin/true"]  # absolute: left to the host


def test_a_script_outside_the_topology_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.py").write_text("pass\n")
    root = tmp_path / "proj"
    root.mkdir()
    topo = root / "outside_m2.py"
    topo.write_text(textwrap.dedent("""
        from storm import Topology
        from storm.multilang import ShellBolt, ShellSpout

        class Outside(Topology):
            numbers = ShellSpout.spec(command=["python3"], script="../elsewhere.py", outputs=["n"])
    """))
    with pytest.raises(StormError, match=r"outside the topology's directory"):
        package_target(str(topo))
    missing = root / "missing_m3.py"
    missing.write_text(topo.read_text().replace("../elsewhere.py", "missing.py"))
    with pytest.raises(StormError, match="does not exist"):
        package_target(str(missing))
