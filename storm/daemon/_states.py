"""`python -m storm.daemon._states`: what nimbus runs (like storm.daemon._inspect,
in a process of its own) to describe the Trident states of a submitted
topology from its unpacked code. Input (JSON on stdin): code_dir, target,
overrides, parallelism; output one JSON line."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..trident._registry import describe_states
from ._inspect import in_subprocess, run

__all__ = ["describe_in_subprocess"]


def describe_in_subprocess(code_dir: Path, target: str, overrides: Mapping[str, Any],
                           parallelism: Mapping[str, int], timeout: float) -> dict[str, Any]:
    """Build the topology from unpacked code in a process of its own (as nimbus
    validates code) and return {state name: description}; StormError on failure."""
    out = in_subprocess("storm.daemon._states", code_dir, target, overrides, parallelism, timeout,
                        "describing the topology's states failed")
    states: dict[str, Any] = out["states"]
    return states


def main() -> int:
    # No base: cluster workers each run in a directory of their own.
    return run(lambda spec: {"name": spec.name, "states": describe_states(spec)})


if __name__ == "__main__":
    sys.exit(main())
