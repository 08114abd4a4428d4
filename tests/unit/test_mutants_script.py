"""scripts/mutants, the check that the suite catches planted bugs: every mutant
of its default list still applies to this tree (its pattern occurs exactly
once) and names tests that exist; a pattern that occurs zero or two times is
an error telling the maintainer to update it, never a pass. Running the
mutants themselves is CI's job (.ci/run), not this test's."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "mutants"


def load_script() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("scripts_mutants", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # dataclasses look their module up by name
    try:
        loader.exec_module(module)
    finally:
        del sys.modules[loader.name]
    return module


mutants = load_script()


@pytest.mark.parametrize("m", mutants.MUTANTS + mutants.CORE_MUTANTS, ids=lambda m: m.name)
def test_every_default_mutant_applies_and_names_existing_tests(m: Any) -> None:
    assert mutants.check_pattern(m) is None
    for t in m.tests:
        assert (REPO / t.split("::")[0]).is_file(), f"{m.name}: no test file {t}"


def test_names_are_unique() -> None:
    names = [m.name for m in mutants.MUTANTS + mutants.CORE_MUTANTS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("old, times", [("this text is in no file at all", 0), ("import", None)])
def test_a_pattern_that_does_not_occur_exactly_once_is_an_error(old: str, times: int | None) -> None:
    m = mutants.mutant("probe", "storm/_grouping.py", old, old + "x", ("tests/unit/test_grouping.py",))
    why = mutants.check_pattern(m)
    assert why is not None and "update the mutant" in why, why
    if times is not None:
        assert f"occurs {times} times" in why


def test_a_missing_file_is_an_error() -> None:
    m = mutants.mutant("probe", "storm/no_such_module.py", "a", "b", ())
    assert "does not exist" in mutants.check_pattern(m)


def test_list_and_bad_usage() -> None:
    listed = subprocess.run([sys.executable, str(SCRIPT), "--list"],
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    for m in mutants.MUTANTS + mutants.CORE_MUTANTS:
        assert m.name in listed.stdout
    bad = subprocess.run([sys.executable, str(SCRIPT), "--only", "no mutant is called this"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no mutant name contains" in bad.stderr
