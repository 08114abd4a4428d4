"""The registry of topologies `storm local` runs on this machine: it writes
``<storm.local.dir>/running/<name>.json`` (its pid, target, overrides, cwd and
details such as its Trident states) when its topology is up and removes it on
exit; an entry whose pid is gone is stale and ignored. `storm query NAME` and
`storm trace NAME` find a local topology here."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["default_local_dir", "entry_path", "register_local", "running_local", "unregister_local"]

REGISTRY_DIR = "running"


def default_local_dir(local_dir: str | os.PathLike[str] | None = None) -> Path:
    return Path(local_dir) if local_dir else Path(tempfile.gettempdir()) / "storm-local"


def entry_path(local_dir: str | os.PathLike[str] | None, name: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "topology"
    return default_local_dir(local_dir) / REGISTRY_DIR / f"{safe}.json"


def register_local(local_dir: str | os.PathLike[str] | None, name: str, target: str,
                   overrides: Mapping[str, Any], details: Mapping[str, Any]) -> Path | None:
    """Record a topology `storm local` runs (this process), with `details`
    (JSON-able, e.g. its Trident states); the path to pass
    to `unregister_local`, or None when it could not be written (a query by
    name will then not find it; the run goes on)."""
    cwd = os.getcwd()
    entry = {"name": name, "pid": os.getpid(), "target": target, "cwd": cwd, "started": time.time(),
             "overrides": {k: v for k, v in overrides.items() if _jsonable(v)},
             **details}
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

