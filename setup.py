"""Build of storm-streams: everything is in pyproject.toml except the compiled
runtime core. Where a C compiler is present, the modules in COMPILED are
compiled with mypyc (the same source runs interpreted elsewhere); set
STORM_PURE_PYTHON=1 at install to skip compiling, or at run time to ignore a
compiled build (storm/_purepython.py)."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig

from setuptools import setup

# The runtime core, compiled as one group (calls between its modules stay in C).
# hooks.py and transport.py stay interpreted: users subclass TaskHooks, and a
# Protocol has nothing to compile.
COMPILED = [
    "storm/_tuple.py",
    "storm/_runtime/acking.py",
    "storm/_runtime/batching.py",
    "storm/_runtime/emit.py",
    "storm/_runtime/executor.py",
    "storm/_runtime/routing.py",
    "storm/_runtime/stats.py",
    "storm/_runtime/worker.py",
]
# The alert engine (its panes and evaluation, the bulk of an alerting topology's
# time): a group of its own, a layer above the core. Nobody subclasses its classes.
COMPILED_ALERTING = [
    "storm/alerting/_engine.py",
    "storm/alerting/_panes.py",
]


def _have_compiler() -> bool:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) is not None


def _ext_modules() -> list[object]:
    if os.environ.get("STORM_PURE_PYTHON") or not _have_compiler():
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:  # a build without mypy: the pure-Python package
        print("storm-streams: mypy not available, installing the pure-Python core", file=sys.stderr)
        return []
    return [*mypycify(COMPILED, opt_level="3", debug_level="0", group_name="storm._core"),
            *mypycify(COMPILED_ALERTING, opt_level="3", debug_level="0", group_name="storm._alerting_core")]


setup(ext_modules=_ext_modules())
