"""What a test needs from the machine (a program, a server, a Python package, a
kernel feature) and what happens when it is not there: outside CI the test is
skipped with the reason and how to provide it; under CI (the environment
variable CI set to anything but "", 0, false or no, as CI services and .ci/run
set it) the test fails, because .ci/run must install and start everything the
suite uses, so a skip there would hide a test that never ran. Every test that
depends on something optional goes through here; nothing else calls
pytest.skip for a missing precondition."""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType
from typing import NoReturn

import pytest

__all__ = ["in_ci", "missing", "require_binary", "require_env", "require_module"]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(reason: str) -> NoReturn:
    """Skip the current test (outside CI) or fail it (under CI) because of `reason`,
    which should say what is missing and how to provide it."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: .ci/run must provide this, so the test fails instead of skipping)",
                    pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_binary(name: str, fix: str) -> str:
    """The path of the program `name` on PATH; `fix` says how to install it."""
    path = shutil.which(name)
    if path is None:
        missing(f"`{name}` is not installed: {fix}")
    return path


def require_module(name: str, fix: str) -> ModuleType:
    """The imported module `name` (pytest.importorskip, but failing under CI)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(f"cannot import {name} ({exc}): {fix}")


def require_env(var: str, fix: str) -> str:
    """The value of the environment variable `var`, which must be set and non-empty."""
    value = os.environ.get(var)
    if not value:
        missing(f"{var} is not set: {fix}")
    return value
