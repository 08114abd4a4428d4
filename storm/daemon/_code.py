"""Topology code on its way to a cluster: the CLI packs the target's file and the
modules it imports from beside it into a deterministic tar.gz with a sha256;
nimbus and the supervisors unpack it into a directory named by that hash; the
spec is rebuilt from the unpacked copy, with the parallelism a rebalance set.

It never runs user code itself except through `build_spec` (in the caller's
process: the CLI, the nimbus validation subprocess, a worker)."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import modulefinder
import os
import shutil
import stat
import sys
import sysconfig
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import StormError, TargetError
from .._target import build_target, fingerprint, is_file_target, load_target
from .._topology import TopologySpec, with_parallelism
from ..yaml_topology import YamlTopology

# Archives above this are refused: code, not data, belongs in a topology archive.
MAX_ARCHIVE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class CodePackage:
    """A packed topology: `target` names it relative to the unpacked archive."""

    archive: bytes
    sha256: str
    target: str
    files: tuple[str, ...]


def build_spec(target: str, overrides: Mapping[str, Any], parallelism: Mapping[str, int] | None = None) -> TopologySpec:
    """Load `target` and build its spec the way a cluster worker does."""
    return with_parallelism(build_target(load_target(target), dict(overrides)), parallelism or {})


def describe_spec(spec: TopologySpec) -> dict[str, Any]:
    """What nimbus keeps of a validated spec (plain data, msgpack-able)."""
    return {
        "name": spec.name,
        "fingerprint": fingerprint(spec),
        "workers": int(spec.config["topology.workers"]),
        "tasks": spec.num_tasks,
        "message_timeout": float(spec.config.get("topology.message.timeout.secs") or 30),
        "components": {
            c.name: {"par": c.par, "tasks": list(c.tasks), "spout": c.is_spout, "system": c.system,
                     **_kafka_source(spec, c), **_stateful_role(c)}
            for c in spec.components.values()
        },
        # What `storm upgrade` compares: the streams' fields and who reads them how.
        "shape": {
            c.name: {"outputs": {name: list(st.fields) for name, st in sorted(c.outputs.items())},
                     "inputs": sorted(f"{s.source}.{s.stream}>{s.grouping.describe()}" for s in c.inputs)}
            for c in spec.components.values() if not c.system
        },
    }


def _stateful_role(c: Any) -> dict[str, Any]:
    """Marks a CheckpointSpout (`storm upgrade` asks it for a checkpoint before
    it stops a worker, and reads the checkpoint it served from its metrics)
    and a StatefulBolt (whose state an upgrade's plan names)."""
    from ..stateful import CheckpointSpout, StatefulBolt

    if not isinstance(c.cls, type):
        return {}
    if c.is_spout and issubclass(c.cls, CheckpointSpout):
        return {"checkpoint": True}
    if not c.is_spout and issubclass(c.cls, StatefulBolt):
        return {"stateful": True}
    return {}


def _kafka_source(spec: TopologySpec, c: Any) -> dict[str, Any]:
    """A KafkaSpout's brokers, group and topics, for the lag in `storm stats`."""
    if not c.is_spout or "KafkaSpout" not in {k.__name__ for k in c.cls.__mro__}:
        return {}
    from ..kafka._lag import source_info

    info = source_info(c.cls, {**spec.config, **c.config}, c.name)
    return {"kafka": dict(info)} if info is not None else {}


# -- packing -----------------------------------------------------------------------
def _excluded_roots() -> list[Path]:
    roots = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix)}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            roots.add(Path(p))
    return [r.resolve() for r in roots]


def _under(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _static_imports(entry: Path, root: Path) -> set[Path]:
    """Files under `root` that `entry` imports, directly or not, found by
    reading the bytecode (modulefinder), whatever this process imported before."""
    finder = modulefinder.ModuleFinder(path=[str(root)])
    try:
        finder.run_script(str(entry))
    except Exception:
        return set()  # a file that does not compile fails later, with a clear error
    files = (getattr(m, "__file__", None) for m in finder.modules.values())
    return {Path(f).resolve() for f in files if f}


def _module_files(root: Path, before: set[str], found: set[Path]) -> set[Path]:
    """Files of the modules in `found` and of those imported since `before` that
    live under `root` (the target's own code), leaving out the storm package and
    installed packages."""
    storm_dir = Path(__file__).resolve().parents[1]
    excluded = _excluded_roots()
    out: set[Path] = set()
    candidates = set(found)
    for name, module in list(sys.modules.items()):
        if name in before or name == "storm" or name.startswith("storm."):
            continue
        file = getattr(module, "__file__", None)
        if file:
            candidates.add(Path(file).resolve())
    for path in candidates:
        if path.suffix != ".py" or not _under(path, root) or _under(path, storm_dir):
            continue
        if any(_under(path, r) and not _under(root, r) for r in excluded):
            continue
        out.add(path)
        # A package's __init__ files up to the root come along with its modules.
        parent = path.parent
        while parent != root and _under(parent, root):
            init = parent / "__init__.py"
            if init.exists():
                out.add(init)
            parent = parent.parent
    return out


def _multilang_files(spec: TopologySpec, root: Path) -> set[Path]:
    """Files the ShellBolt/ShellSpout children of `spec` run: each `script=`
    (resolved as storm.multilang resolves it: against the directory of the
    module that declared it), the local modules a Python script imports, and
    any word of `command=` / `args=` naming a file under `root` (against the
    child's working directory). A relative script outside `root` is an error:
    the cluster's hosts would not have it. Absolute paths outside `root` are
    left out: they must exist on every host."""
    from .. import multilang

    out: set[Path] = set()
    for comp in spec.components.values():
        conf = comp.config
        if multilang.KEY_COMMAND not in conf:
            continue
        base: Path | None = None
        mod = sys.modules.get(str(conf.get(multilang.KEY_BASE) or ""))
        mod_file = getattr(mod, "__file__", None)
        if mod_file:
            base = Path(mod_file).resolve().parent
        script = conf.get(multilang.KEY_SCRIPT)
        if script and base is not None:
            raw = Path(str(script))
            path = (raw if raw.is_absolute() else base / raw).resolve()
            if _under(path, root):
                if not path.is_file():
                    raise StormError(f"component '{comp.name}': its multi-lang script {path} does not exist")
                out.add(path)
                if path.suffix == ".py":
                    out.update(p for p in _static_imports(path, path.parent) if _under(p, root))
            elif not raw.is_absolute():
                raise StormError(
                    f"component '{comp.name}': its multi-lang script {script} ({path}) is outside the "
                    f"topology's directory {root}, so it cannot be packed for the cluster; move it under "
                    "that directory or give an absolute path that exists on every host")
        if base is None:
            continue  # without a script the child runs in the worker's own directory
        cwd = conf.get(multilang.KEY_CWD)
        child_cwd = (base / str(cwd)).resolve() if cwd and not Path(str(cwd)).is_absolute() else \
            Path(str(cwd)) if cwd else base
        for word in [*(conf.get(multilang.KEY_COMMAND) or []), *(conf.get(multilang.KEY_ARGS) or [])]:
            word = str(word)
            if not word or word.startswith("-"):
                continue
            candidate = (child_cwd / word).resolve()
            if _under(candidate, root) and candidate.is_file():
                out.add(candidate)
    return out


def _origin(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.has_location:
        raise TargetError(f"cannot find module '{module}' to package it; name a .py file instead")
    return Path(spec.origin).resolve()


def _root_of(target: str) -> tuple[Path, str, str]:
    """(directory the archive is rooted at, entry module file or dotted name, attr)."""
    path_part, _, attr = target.partition(":")
    if is_file_target(path_part):
        file = Path(path_part).resolve()
        return file.parent, file.name, attr
    origin = _origin(path_part)
    depth = path_part.count(".") + (1 if origin.name == "__init__.py" else 0)
    root = origin.parent
    for _ in range(depth):
        root = root.parent
    return root, path_part, attr


def package_target(target: str, overrides: Mapping[str, Any] | None = None) -> tuple[CodePackage, TopologySpec]:
    """Build `target` here (so a bad topology fails before anything is sent)
    and pack its code: the file plus every module it imported from its own
    directory tree. A `module:Name` target in an installed package packs
    nothing: the cluster's hosts must have that package installed too."""
    before = set(sys.modules)
    obj = load_target(target)
    spec = build_target(obj, dict(overrides or {}))
    if isinstance(obj, YamlTopology):
        yaml_root, packed, yaml_target = _yaml_files(obj, spec, before)
        return _pack(target, yaml_root, packed, yaml_target), spec
    root, entry, attr = _root_of(target)
    entry_file = root / entry if entry.endswith(".py") else _origin(entry)
    if any(_under(root, r) for r in _excluded_roots()):
        files: set[Path] = set()  # an installed package: the cluster has it too
    else:
        files = _module_files(root, before, _static_imports(entry_file, root))
        files |= _multilang_files(spec, root)
    if entry.endswith(".py"):
        files.add(root / entry)
        rel_target = entry + (f":{attr}" if attr else "")
    else:
        rel_target = target
    return _pack(target, root, files, rel_target), spec


def _yaml_files(obj: YamlTopology, spec: TopologySpec, before: set[str]) -> tuple[Path, set[Path], str]:
    """What a YAML topology needs on the cluster: the file, the files it
    includes, the modules its classes live in (and their local imports) and
    its multi-lang scripts, rooted at the directory holding all the YAML files."""
    root = Path(os.path.commonpath([str(f.parent) for f in obj.files]))
    if root == Path(root.anchor):
        shown = ", ".join(str(f) for f in obj.files)
        raise StormError(f"the files of '{obj.path}' ({shown}) share no directory but the filesystem root, so "
                         "they cannot be packed for the cluster; keep included files beside the topology file")
    found: set[Path] = set()
    for comp in obj.specs.values():
        file = getattr(sys.modules.get(comp.cls.__module__), "__file__", None)
        if file and _under(Path(file).resolve(), root):
            found.add(Path(file).resolve())
            found |= _static_imports(Path(file), root)
    if any(_under(root, r) for r in _excluded_roots()):
        files: set[Path] = set()
    else:
        files = _module_files(root, before, found) | _multilang_files(spec, root)
    files |= set(obj.files)
    return root, files, str(obj.path.relative_to(root))


def _pack(target: str, root: Path, files: set[Path], rel_target: str) -> CodePackage:
    buf = io.BytesIO()
    # Deterministic bytes: sorted names, fixed mtime and owner, no gzip timestamp.
    names = sorted(str(f.relative_to(root)) for f in files)
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name in names:
            data = (root / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            # An executable (a multi-lang command) stays executable on the cluster's hosts.
            info.mode = 0o755 if (root / name).stat().st_mode & stat.S_IXUSR else 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    archive = buf.getvalue()
    if len(archive) > MAX_ARCHIVE_BYTES:
        raise StormError(f"the code of '{target}' packs to {len(archive)} bytes, above {MAX_ARCHIVE_BYTES}")
    return CodePackage(archive, hashlib.sha256(archive).hexdigest(), rel_target, tuple(names))


def unpack(archive: bytes, sha256: str, dest: Path) -> Path:
    """Unpack into `dest` (created atomically; kept if already there)."""
    if hashlib.sha256(archive).hexdigest() != sha256:
        raise StormError("the topology code archive does not match its sha256; submit it again")
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            for member in tar.getmembers():
                if not member.isfile() or member.name.startswith("/") or ".." in Path(member.name).parts:
                    raise StormError(f"the topology code archive has an unsafe entry {member.name!r}")
            tar.extractall(tmp, filter="data")
        try:
            os.replace(tmp, dest)
        except OSError:
            if not dest.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def resolve_target(code_dir: Path, target: str) -> str:
    """The target as a worker names it, given where the archive was unpacked."""
    path_part, sep, attr = target.partition(":")
    if is_file_target(path_part):
        return str(code_dir / path_part) + (sep + attr if sep else "")
    return target
