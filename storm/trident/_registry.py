"""Where a running topology's Trident states live, for `storm query NAME`.

- `describe_states(spec)`: each persisted state's backend and location as
  plain data (JSON-able), and `factory_from_description` back to a factory
  that reads it.
- The local registry: `storm local` writes
  ``<storm.local.dir>/running/<name>.json`` (its pid, target, overrides, cwd
  and the state descriptions) when its topology is up and removes it on exit;
  an entry whose pid is gone is stale and ignored.
- ``python -m storm.trident._registry``: what nimbus runs (like
  storm.daemon._inspect, in a process of its own) to describe the states of
  a submitted topology from its unpacked code. Input (JSON on stdin):
  code_dir, target, overrides, parallelism; output one JSON line.

Reads and writes nothing of the running topology itself."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._errors import StormError
from ._state import MemoryState, SQLiteState, StateFactory

REGISTRY_DIR = "running"


# -- state descriptions ------------------------------------------------------------

def describe_factory(factory: StateFactory, base: str | None = None) -> dict[str, Any]:
    """A state's backend and location as plain data. A relative SQLite path is
    made absolute against `base` (the workers' cwd) when given."""
    from ._backends import PostgresState, RedisState

    kind = factory.kind
    if isinstance(factory, SQLiteState):
        path = factory.path
        relative = not os.path.isabs(path)
        if relative and base is not None:
            path, relative = os.path.normpath(os.path.join(base, path)), False
        return {"backend": "sqlite", "path": path, "table": factory.table, "kind": kind, "relative": relative}
    if isinstance(factory, RedisState):
        return {"backend": "redis", "url": factory.url, "name": factory.name, "kind": kind}
    if isinstance(factory, PostgresState):
        return {"backend": "postgres", "dsn": factory.dsn, "table": factory.table, "kind": kind}
    if isinstance(factory, MemoryState):
        return {"backend": "memory", "kind": kind}
    return {"backend": type(factory).__name__, "kind": kind}


def describe_states(spec: Any, base: str | None = None) -> dict[str, dict[str, Any]]:
    """{state name: description} of a compiled Trident topology (empty for others)."""
    from ._pipes import PersistPipe

    out: dict[str, dict[str, Any]] = {}
    for c in spec.components.values():
        for pipe in getattr(c.cls, "pipes", None) or ():
            if isinstance(pipe, PersistPipe):
                out[pipe.state_name] = describe_factory(pipe.factory, base)
    return out


def factory_from_description(state: str, d: Mapping[str, Any], where: str) -> StateFactory:
    """A factory that reads the state `d` describes; StormError if it cannot be read from here."""
    from ._backends import PostgresState, RedisState

    backend = d.get("backend")
    kind = str(d.get("kind") or "transactional")
    if backend == "sqlite":
        if d.get("relative"):
            raise StormError(
                f"state '{state}' of {where} is a SQLite file at the relative path {d['path']!r}, which "
                "each cluster worker resolves in its own directory; give SQLiteState an absolute path")
        return SQLiteState(str(d["path"]), str(d["table"]), kind=kind)
    if backend == "redis":
        return RedisState(str(d["url"]), str(d["name"]), kind=kind)
    if backend == "postgres":
        return PostgresState(str(d["dsn"]), str(d["table"]), kind=kind)
    if backend == "memory":
        raise StormError(f"state '{state}' of {where} is a MemoryState: it lives inside the workers only")
    raise StormError(f"state '{state}' of {where} is a {backend}, which storm query cannot locate by "
                     "topology name; query it through the topology file: storm query FILE STATE ...")


# -- the local registry ------------------------------------------------------------

def default_local_dir(local_dir: str | os.PathLike[str] | None = None) -> Path:
    return Path(local_dir) if local_dir else Path(tempfile.gettempdir()) / "storm-local"


def entry_path(local_dir: str | os.PathLike[str] | None, name: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "topology"
    return default_local_dir(local_dir) / REGISTRY_DIR / f"{safe}.json"


def register_local(local_dir: str | os.PathLike[str] | None, name: str, target: str,
                   overrides: Mapping[str, Any], spec: Any) -> Path | None:
    """Record a topology `storm local` runs (this process); the path to pass
    to `unregister_local`, or None when it could not be written (a query by
    name will then not find it; the run goes on)."""
    cwd = os.getcwd()
    entry = {"name": name, "pid": os.getpid(), "target": target, "cwd": cwd, "started": time.time(),
             "overrides": {k: v for k, v in overrides.items() if _jsonable(v)},
             "states": describe_states(spec, cwd)}
    path = entry_path(local_dir, name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, path)  # readers see the whole entry or none
    except OSError:
        return None
    return path


def unregister_local(path: Path | None) -> None:
    """Remove an entry this process wrote (not one a later run replaced)."""
    if path is None:
        return
    try:
        entry = json.loads(path.read_text())
        if entry.get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_local(local_dir: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Any]]:
    """Entries of topologies `storm local` runs now, by name (stale ones are skipped)."""
    out: dict[str, dict[str, Any]] = {}
    directory = default_local_dir(local_dir) / REGISTRY_DIR
    if not directory.is_dir():
        return out
    for path in directory.glob("*.json"):
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(entry, dict) and _alive(entry.get("pid")):
            out[str(entry.get("name"))] = entry
    return out


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


# -- describing a submitted topology, for nimbus -----------------------------------

def describe_in_subprocess(code_dir: Path, target: str, overrides: Mapping[str, Any],
                           parallelism: Mapping[str, int], timeout: float) -> dict[str, Any]:
    """Build the topology from unpacked code in a process of its own (as nimbus
    validates code) and return {state name: description}; StormError on failure."""
    from ..daemon._inspect import in_subprocess

    out = in_subprocess("storm.trident._registry", code_dir, target, overrides, parallelism, timeout,
                        "describing the topology's states failed")
    states: dict[str, Any] = out["states"]
    return states


def main() -> int:
    from ..daemon._inspect import run

    # No base: cluster workers each run in a directory of their own.
    return run(lambda spec: {"name": spec.name, "states": describe_states(spec)})


if __name__ == "__main__":
    sys.exit(main())
