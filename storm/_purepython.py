"""Which build of the runtime core runs: the mypyc-compiled modules (where a C
compiler was present at install) or their pure-Python source, which
``STORM_PURE_PYTHON=1`` forces even when a compiled build is installed
(for profiling with cProfile, or to check both builds behave the same).

Compiled and pure builds are the same source: storm/_tuple.py, the modules of
storm/_runtime/ listed in setup.py's COMPILED, and the alert engine's two
(COMPILED_ALERTING). Python would import a compiled
module's extension file before its source; the finder here reverses that for
those modules only."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

__all__ = ["COMPILED_MODULES", "prefer_source", "pure_python_requested"]

COMPILED_MODULES = frozenset({
    "storm._tuple",
    "storm._runtime.acking",
    "storm._runtime.batching",
    "storm._runtime.emit",
    "storm._runtime.executor",
    "storm._runtime.routing",
    "storm._runtime.stats",
    "storm._runtime.worker",
    "storm.alerting._engine",
    "storm.alerting._panes",
})


def pure_python_requested() -> bool:
    return os.environ.get("STORM_PURE_PYTHON", "") not in ("", "0")


class _SourceFirst:
    """A meta path finder: the compiled modules load from their .py files."""

    @staticmethod
    def find_spec(fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        if fullname not in COMPILED_MODULES or not path:
            return None
        leaf = fullname.rpartition(".")[2]
        for entry in path:
            source = os.path.join(entry, leaf + ".py")
            if os.path.exists(source):
                loader = importlib.machinery.SourceFileLoader(fullname, source)
                return importlib.util.spec_from_file_location(fullname, source, loader=loader)
        return None


def prefer_source() -> None:
    """Load the core from source from now on (before it is first imported)."""
    if not any(isinstance(f, _SourceFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFirst())
