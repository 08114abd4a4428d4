"""The README stays true: its quickstart code runs, its storm.testing example
passes, and the `storm local` options it documents are the command's options."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main

from storm.cli import app

pytestmark = pytest.mark.timeout(30)

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_quickstart_topology_runs_in_the_test_harness() -> None:
    quickstart, testing_example = python_blocks()[:2]
    namespace: dict[str, object] = {"__name__": "readme_quickstart"}
    exec(compile(quickstart, "README quickstart", "exec"), namespace)
    exec(compile(testing_example, "README storm.testing example", "exec"), namespace)


def test_documented_options_are_the_commands_options() -> None:
    group = typer.main.get_command(app)
    local = group.commands["local"]  # type: ignore[attr-defined]
    options = {opt for p in local.params for opt in p.opts if opt.startswith("--")} - {"--help"}
    section = README.read_text().split("## `storm local`", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(--[a-z-]+)", section))
    assert documented == options
