"""Where a running topology's Trident states live, for `storm query NAME`.

- `describe_states(spec)`: each persisted state's backend and location as
  plain data (JSON-able), and `factory_from_description` back to a factory
  that reads it.
- The local registry of running topologies is storm._registry's; `storm
  local` puts these descriptions in its entry.
- ``python -m storm.daemon._states`` is what nimbus runs (like
  storm.daemon._inspect, in a process of its own) to describe the states of
  a submitted topology from its unpacked code. Input (JSON on stdin):
  code_dir, target, overrides, parallelism; output one JSON line.

Reads and writes nothing of the running topology itself."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .._errors import StormError
from ._state import MemoryState, SQLiteState, StateFactory

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
