"""The compiled and the pure-Python core: `storm version` says which runs,
STORM_PURE_PYTHON=1 loads the source even where a build exists (the README's
two commands), and under CI (which compiles it) the core is the compiled one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import storm._runtime.worker
import storm.alerting._engine
from storm._purepython import COMPILED_MODULES
from storm._runtime import core_build

STORM = Path(sys.executable).with_name("storm")
ROOT = Path(__file__).resolve().parents[2]


def storm_version(**env: str) -> str:
    out = subprocess.run([str(STORM), "version"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, **env}, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.timeout(120)
def test_storm_version_says_which_core_runs() -> None:
    built = any(p.suffix == ".so" for p in (ROOT / "storm" / "_runtime").iterdir())
    assert "core: pure Python" in storm_version(STORM_PURE_PYTHON="1")
    assert f"core: {'compiled' if built else 'pure Python'}" in storm_version(STORM_PURE_PYTHON="")


@pytest.mark.timeout(30)
def test_this_run_uses_the_build_it_was_asked_for() -> None:
    pure = os.environ.get("STORM_PURE_PYTHON", "") not in ("", "0")
    if pure:
        assert core_build() == "pure Python"
        for name in COMPILED_MODULES:
            module = sys.modules.get(name)
            assert module is None or (module.__file__ or "").endswith(".py"), name
    elif os.environ.get("CI") == "true":
        # .ci/run compiles the core: the suite must test the compiled build.
        assert core_build() == "compiled", storm._runtime.worker.__file__
        assert not (storm.alerting._engine.__file__ or "").endswith(".py"), "the alert engine is compiled too"


@pytest.mark.timeout(30)
def test_every_compiled_module_is_listed_once_in_setup_py() -> None:
    text = (ROOT / "setup.py").read_text()
    listed = {line.strip().strip('",').removesuffix(".py").replace("/", ".")
              for line in text.splitlines() if line.strip().startswith('"storm/')}
    assert listed == set(COMPILED_MODULES)
